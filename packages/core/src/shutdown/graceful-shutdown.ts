// Graceful shutdown in the order load balancers need: fail readiness, wait for endpoints to update, stop
// accepting, let in-flight requests finish up to a deadline, then cancel them (the core shutdown switch), run the
// cleanup hooks and exit.

import { Server as NetServer } from 'node:net'
import { BreakwaterError, ErrorCode, InvalidOptionError } from '../errors.js'
import { channels, publish } from '../events.js'
import { monotonicNow } from '../internal/clock.js'
import { type Duration, duration, knownOptions, optionKeys } from '../internal/validate.js'
import { isShuttingDown, triggerShutdown } from '../timeout/shutdown.js'
import { flushBackgroundWrites } from './background-writes.js'

/**
 * What graceful shutdown needs of a server. `http.Server` (Express, Koa, plain Node) is adapted by
 * {@link createGracefulShutdown} itself; `@breakwater/fastify` builds one over `app.close()`.
 */
export interface ServerCloser {
  /** Stop accepting connections; resolve once every open connection has ended. */
  close(): Promise<void>
  /** Close connections with no request in flight (idle keep-alive). */
  closeIdleConnections(): void
  /** Destroy every connection, busy or not. */
  closeAllConnections(): void
}

/** A cleanup step run after the server has closed; it gets a signal aborted at its timeout. */
export type ShutdownHook =
  | ((signal: AbortSignal) => unknown)
  | { name: string; run(signal: AbortSignal): unknown; timeoutMs?: Duration }

/** Options of {@link createGracefulShutdown} and of every adapter's `gracefulShutdown()`. */
export interface GracefulShutdownOptions {
  /**
   * Signals that start the shutdown. Default `["SIGTERM", "SIGINT"]`. `false`: none — call `trigger()`
   * yourself. Repeated signals during a shutdown are ignored: the timeout bounds it.
   */
  signals?: readonly NodeJS.Signals[] | false
  /**
   * How long to keep serving with readiness failing, so load balancers and Kubernetes endpoints stop routing
   * here before the listener closes. Default `5000` ms; `0` closes at once.
   */
  drainDelayMs?: Duration | 0
  /**
   * The whole budget, from the signal: in-flight requests that are still running at this point have their
   * signals aborted (`BW_SHUTDOWN`) and, a second later, their connections destroyed. Idempotency results still
   * being written in the background (the store stalled when they completed) are retried until this point too,
   * then given up; the hooks run after that. Must exceed
   * `drainDelayMs`. Default `20_000` ms, which with the hooks fits Kubernetes' default 30 s grace period.
   */
  timeoutMs?: Duration
  /** Run after the server has closed, in order (close Redis clients, flush telemetry). Default none. */
  hooks?: readonly ShutdownHook[]
  /** Time each hook gets unless it sets its own `timeoutMs`. Default `5000` ms. */
  hookTimeoutMs?: Duration
  /**
   * End the process when done: `true` (default) calls `process.exit(code)`, a function is called with the code
   * instead, `false` leaves the process alone (`trigger()` still resolves with the result). The code is 0 when
   * everything finished in time, 1 when the timeout hit or a hook failed.
   */
  exit?: boolean | ((code: number) => void)
}

/** What a shutdown did. */
export interface ShutdownResult {
  /**
   * 0 when clean; 1 when in-flight requests had to be aborted at the timeout, background writes were given up,
   * or a hook failed.
   */
  exitCode: 0 | 1
  /** The shutdown timeout hit while requests were in flight. */
  timedOut: boolean
  /**
   * Background writes given up at the timeout: idempotency results a stalled store had not taken (each also
   * reported as a `store_error` on `breakwater:idempotency:settled`). Their keys may execute again.
   */
  unwritten: number
  /** Names of hooks that threw or timed out. */
  failedHooks: string[]
  durationSeconds: number
}

/** A shutdown controller: `trigger()` starts it by hand, `dispose()` removes its signal listeners. */
export interface GracefulShutdown {
  /** `serving` until triggered, then `draining`, `closing`, `hooks` and `done`. */
  readonly state: 'serving' | 'draining' | 'closing' | 'hooks' | 'done'
  /** Start the shutdown (once; later calls return the same promise). */
  trigger(reason?: string): Promise<ShutdownResult>
  /** Add a hook (run after those given in options). */
  addHook(hook: ShutdownHook): void
  /** Stop listening for signals (a shutdown already started goes on). */
  dispose(): void
}

const DEFAULT_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT']
const DEFAULT_DRAIN_DELAY_MS = 5_000
const DEFAULT_TIMEOUT_MS = 20_000
const DEFAULT_HOOK_TIMEOUT_MS = 5_000
/** After cancelling in-flight work, how long its 503s get to reach the clients before connections are destroyed. */
const ABORT_GRACE_MS = 1_000
/** Idle keep-alive connections are swept this often while closing: a request finishing leaves its socket idle. */
const SWEEP_INTERVAL_MS = 50

let draining = false

/**
 * True from the moment a graceful shutdown starts: readiness probes fail from then on, before the server stops
 * accepting. (The core shutdown switch, `isShuttingDown()`, flips later, when in-flight work is cancelled.)
 *
 * @example
 * if (isDraining()) response.setHeader('Connection', 'close')
 */
export function isDraining(): boolean {
  return draining || isShuttingDown()
}

/** Every option of gracefulShutdown; any other key is an error naming it. */
const OPTIONS = optionKeys<GracefulShutdownOptions>()([
  'signals',
  'drainDelayMs',
  'timeoutMs',
  'hooks',
  'hookTimeoutMs',
  'exit',
])

/**
 * Graceful shutdown of a server: on SIGTERM (or `trigger()`), readiness fails at once; after `drainDelayMs` the
 * server stops accepting and idle keep-alive connections are closed; in-flight requests finish up to
 * `timeoutMs`, at which their signals are aborted (`triggerShutdown()`); the hooks run, each bounded; the
 * process exits 0 (1 if the timeout hit or a hook failed). Options are checked here (`BW_INVALID_OPTION`).
 *
 * @example
 * const server = app.listen(3000)
 * createGracefulShutdown(server, {
 *   drainDelayMs: '5s',
 *   timeoutMs: '20s',
 *   hooks: [{ name: 'redis', run: () => redis.quit() }],
 * })
 */
export function createGracefulShutdown(
  server: NetServer | ServerCloser,
  options: GracefulShutdownOptions = {},
): GracefulShutdown {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('gracefulShutdown', options, OPTIONS)
  const closer = server instanceof NetServer ? netServerCloser(server) : checkCloser(server)
  const signals = options.signals ?? DEFAULT_SIGNALS
  if (signals !== false && (!Array.isArray(signals) || signals.some((s) => typeof s !== 'string'))) {
    throw new InvalidOptionError('signals', signals, 'an array of signal names, or false')
  }
  const drainDelayMs = orZero('drainDelayMs', options.drainDelayMs ?? DEFAULT_DRAIN_DELAY_MS)
  const timeoutMs = duration('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  if (timeoutMs <= drainDelayMs) {
    throw new InvalidOptionError('timeoutMs', options.timeoutMs, `more than drainDelayMs (${drainDelayMs} ms)`)
  }
  const hookTimeoutMs = duration('hookTimeoutMs', options.hookTimeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS)
  const hooks = (options.hooks ?? []).map((hook, i) => resolveHook(hook, `hooks[${i}]`, hookTimeoutMs))
  const exit = options.exit ?? true
  if (typeof exit !== 'boolean' && typeof exit !== 'function') {
    throw new InvalidOptionError('exit', exit, 'a boolean or a function (code) => void')
  }

  let state: GracefulShutdown['state'] = 'serving'
  let running: Promise<ShutdownResult> | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    void controller.trigger(signal)
  }
  if (signals !== false) for (const signal of signals) process.on(signal, onSignal)

  const run = async (reason: string): Promise<ShutdownResult> => {
    const started = monotonicNow()
    const elapsed = () => (monotonicNow() - started) / 1000
    const phase = (name: 'draining' | 'closing' | 'timed_out' | 'hook' | 'exit', extra: object = {}) => {
      if (channels.shutdownPhase.hasSubscribers) {
        publish(channels.shutdownPhase, { phase: name, reason, elapsedSeconds: elapsed(), ...extra })
      }
    }
    state = 'draining'
    draining = true
    phase('draining')
    if (drainDelayMs > 0) await sleep(drainDelayMs)

    state = 'closing'
    phase('closing')
    const closed = closer.close().catch(() => {}) // not listening (closed elsewhere): nothing left to wait for
    closer.closeIdleConnections()
    const sweep = setInterval(() => closer.closeIdleConnections(), SWEEP_INTERVAL_MS)
    sweep.unref()
    let timedOut = false
    if (!(await settlesWithin(closed, timeoutMs - (monotonicNow() - started)))) {
      timedOut = true
      phase('timed_out')
      triggerShutdown() // every in-flight request's signal aborts; armed requests are answered 503
      if (!(await settlesWithin(closed, ABORT_GRACE_MS))) {
        closer.closeAllConnections()
        await settlesWithin(closed, ABORT_GRACE_MS)
      }
    }
    clearInterval(sweep)
    triggerShutdown() // anything subscribed with onShutdown() (workers, pollers) stops now too
    // Idempotency results a stalled store has not taken yet get what is left of the deadline, before the hooks
    // close the store's client: once the process is gone they are never written.
    const unwritten = await flushBackgroundWrites(timeoutMs - (monotonicNow() - started))

    state = 'hooks'
    const failedHooks: string[] = []
    for (const hook of hooks) {
      const error = await runHook(hook)
      if (error !== undefined) failedHooks.push(hook.name)
      phase('hook', { hook: hook.name, error })
    }
    const exitCode = timedOut || unwritten > 0 || failedHooks.length > 0 ? 1 : 0
    state = 'done'
    phase('exit', { exitCode })
    controller.dispose()
    if (exit === true) process.exit(exitCode)
    else if (typeof exit === 'function') exit(exitCode)
    return { exitCode, timedOut, unwritten, failedHooks, durationSeconds: elapsed() }
  }

  const controller: GracefulShutdown = {
    get state() {
      return state
    },
    trigger(reason = 'manual') {
      running ??= run(String(reason))
      return running
    },
    addHook(hook) {
      hooks.push(resolveHook(hook, 'hook', hookTimeoutMs))
    },
    dispose() {
      if (signals !== false) for (const signal of signals) process.off(signal, onSignal)
    },
  }
  return controller
}

interface ResolvedHook {
  name: string
  run(signal: AbortSignal): unknown
  timeoutMs: number
}

function resolveHook(hook: ShutdownHook, option: string, defaultTimeoutMs: number): ResolvedHook {
  if (typeof hook === 'function') return { name: hook.name || option, run: hook, timeoutMs: defaultTimeoutMs }
  if (typeof hook !== 'object' || hook === null || typeof hook.run !== 'function') {
    throw new InvalidOptionError(option, hook, 'a function or { name, run, timeoutMs? }')
  }
  if (typeof hook.name !== 'string' || hook.name === '')
    throw new InvalidOptionError(`${option}.name`, hook.name, 'a name')
  const timeoutMs = hook.timeoutMs === undefined ? defaultTimeoutMs : duration(`${option}.timeoutMs`, hook.timeoutMs)
  return { name: hook.name, run: hook.run.bind(hook), timeoutMs }
}

/** Run one hook, bounded by its timeout; resolves with its failure (or timeout error), undefined when it finished. */
async function runHook(hook: ResolvedHook): Promise<unknown> {
  const controller = new AbortController()
  const timer = setTimeout(() => {
    controller.abort(
      new BreakwaterError(
        ErrorCode.ShutdownHookTimeout,
        `Shutdown hook "${hook.name}" timed out after ${hook.timeoutMs} ms`,
      ),
    )
  }, hook.timeoutMs)
  const aborted = new Promise<unknown>((resolve) => {
    controller.signal.addEventListener('abort', () => resolve(controller.signal.reason), { once: true })
  })
  try {
    const finished = Promise.resolve()
      .then(() => hook.run(controller.signal))
      .then(
        () => undefined,
        (error: unknown) => error ?? new Error(`Shutdown hook "${hook.name}" failed`),
      )
    return await Promise.race([finished, aborted])
  } finally {
    clearTimeout(timer)
  }
}

/** The closer of a node:http (or https, http2, net) server. */
function netServerCloser(server: NetServer): ServerCloser {
  const http = server as NetServer & { closeIdleConnections?(): void; closeAllConnections?(): void }
  return {
    close() {
      // Requests arriving on kept-alive connections after this are still served, but told to reconnect elsewhere.
      server.on('request', (_request: unknown, response: { setHeader?(name: string, value: string): void }) => {
        response.setHeader?.('Connection', 'close')
      })
      return new Promise<void>((resolve) => {
        server.close(() => resolve())
      })
    },
    closeIdleConnections: () => http.closeIdleConnections?.(),
    closeAllConnections: () => http.closeAllConnections?.(),
  }
}

function checkCloser(value: unknown): ServerCloser {
  const closer = value as ServerCloser
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof closer.close !== 'function' ||
    typeof closer.closeIdleConnections !== 'function' ||
    typeof closer.closeAllConnections !== 'function'
  ) {
    throw new InvalidOptionError(
      'server',
      value,
      'an http.Server or { close, closeIdleConnections, closeAllConnections }',
    )
  }
  return closer
}

function orZero(option: string, value: unknown): number {
  return value === 0 ? 0 : duration(option, value)
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Whether `promise` settles within `ms` (its timer never holds the process open). */
function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(false)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    promise.then(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}
