// The health probes, framework-free: liveness (never touches dependencies), readiness (checks, overload,
// startup, draining) and startup, each answered as `application/health+json`; adapters only mount the routes.

import { InvalidOptionError } from '../errors.js'
import { channels, publish } from '../events.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { knownOptions, optionKeys } from '../internal/validate.js'
import type { HeaderList, RequestView } from '../request-view.js'
import { isDraining } from '../shutdown/graceful-shutdown.js'
import { isShuttingDown } from '../timeout/shutdown.js'
import { type CheckResult, CheckRunner, cacheOrZero } from './check-runner.js'
import type {
  CheckReport,
  HealthBody,
  HealthInfo,
  HealthOptions,
  HealthStatus,
  ProbeAnswer,
  ProbeKind,
  ProbeRoute,
} from './types.js'

/** The `Content-Type` of every probe answer. */
export const HEALTH_CONTENT_TYPE = 'application/health+json'

/** Probes answered by one set of checks; adapters call {@link Health.answer} from their routes. */
export interface Health {
  /** The probes to mount, with their paths (probes turned off with `paths` are absent). */
  readonly routes: readonly ProbeRoute[]
  /** True once {@link Health.markStarted} was called (or `started: true` was given). */
  readonly started: boolean
  /** Startup is complete: startup and readiness probes may pass from now on. Idempotent. */
  markStarted(): void
  /**
   * The answer to a probe. Details are included only when `authorize(request)` allows it; without a request
   * (framework-free use) they are included.
   */
  answer(kind: ProbeKind, request?: RequestView): Promise<ProbeAnswer>
  /** The probe's body with details, without HTTP: for logs, tests, an admin page. */
  report(kind: ProbeKind): Promise<HealthBody>
  /** Stop background refreshes (with `refreshIntervalMs`). */
  close(): void
}

const DEFAULT_PATHS: Record<ProbeKind, string> = { live: '/livez', ready: '/readyz', startup: '/startupz' }
const DEFAULT_CACHE_MS = 1_000
const HEADERS: HeaderList = Object.freeze([
  Object.freeze(['Content-Type', HEALTH_CONTENT_TYPE] as const),
  // Probes must see the current state, never a proxy's copy of an earlier one.
  Object.freeze(['Cache-Control', 'no-store'] as const),
])
const PUBLIC_PAYLOADS: Record<HealthStatus, string> = {
  pass: '{"status":"pass"}',
  warn: '{"status":"warn"}',
  fail: '{"status":"fail"}',
}

/** Every option of health; any other key is an error naming it. */
const OPTIONS = optionKeys<HealthOptions>()([
  'checks',
  'overload',
  'overloadStatus',
  'authorize',
  'paths',
  'started',
  'cacheMs',
  'refreshIntervalMs',
  'info',
])

/**
 * Create the health probes. Options are checked here; an invalid one throws `BW_INVALID_OPTION` naming it.
 *
 * - **live**: passes whenever the process can answer — it never runs checks, so a failing dependency cannot get
 *   every replica restarted at once.
 * - **ready**: fails while starting, draining or shutting down (without running checks), when a critical check
 *   fails, or while `overload` reports overload; a failing non-critical check warns.
 * - **startup**: fails until `markStarted()`, then passes for good.
 *
 * @example
 * const health = createHealth({
 *   checks: [{ name: 'postgres', check: (signal) => pool.query({ text: 'SELECT 1', signal }), timeoutMs: 300 }],
 *   overload: shedder,
 *   authorize: (request) => request.header('authorization') === `Bearer ${process.env.HEALTH_TOKEN}`,
 * })
 * await warmCaches()
 * health.markStarted()
 * const { statusCode, headers, payload } = await health.answer('ready')
 */
export function createHealth(options: HealthOptions = {}, now: Clock = monotonicNow): Health {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('health', options, OPTIONS)
  const cacheMs = cacheOrZero('cacheMs', options.cacheMs ?? DEFAULT_CACHE_MS)
  const checks = options.checks ?? []
  if (!Array.isArray(checks)) throw new InvalidOptionError('checks', checks, 'an array of checks')
  const runners = checks.map((check, i) => new CheckRunner(check, i, cacheMs, now))
  const keys = new Set<string>()
  for (const runner of runners) {
    if (keys.has(runner.key)) throw new InvalidOptionError('checks', runner.key, 'unique name:measurement keys')
    keys.add(runner.key)
  }
  const overload = options.overload
  if (overload !== undefined && typeof overload?.overloadState !== 'function') {
    throw new InvalidOptionError('overload', overload, 'an object with overloadState()')
  }
  const overloadStatus = options.overloadStatus ?? 'fail'
  if (overloadStatus !== 'fail' && overloadStatus !== 'warn') {
    throw new InvalidOptionError('overloadStatus', overloadStatus, '"fail" or "warn"')
  }
  const authorize = options.authorize
  if (authorize !== undefined && typeof authorize !== 'function') {
    throw new InvalidOptionError('authorize', authorize, 'a function (request) => boolean')
  }
  const routes = resolveRoutes(options.paths ?? {})
  const info = resolveInfo(options.info ?? {})
  let started = options.started ?? false
  if (typeof started !== 'boolean') throw new InvalidOptionError('started', started, 'a boolean')

  let refresher: NodeJS.Timeout | undefined
  const background = options.refreshIntervalMs !== undefined
  if (background) {
    const interval = cacheOrZero('refreshIntervalMs', options.refreshIntervalMs)
    if (interval === 0) throw new InvalidOptionError('refreshIntervalMs', 0, 'a positive duration')
    const refreshAll = () => {
      for (const runner of runners) void runner.refresh()
    }
    refreshAll()
    refresher = setInterval(refreshAll, interval)
    refresher.unref() // probes keep nothing alive
  }

  const lifecycle = (): { status: HealthStatus; state: string } => {
    if (isShuttingDown()) return { status: 'fail', state: 'shutting-down' }
    if (isDraining()) return { status: 'fail', state: 'draining' }
    return started ? { status: 'pass', state: 'serving' } : { status: 'fail', state: 'starting' }
  }

  const report = async (kind: ProbeKind): Promise<HealthBody> => {
    const time = new Date().toISOString()
    const state = lifecycle()
    const body: HealthBody = { status: 'pass', ...info }
    if (kind === 'live') {
      // Live while starting and while draining: a restart would not help either.
      body.checks = {
        'process:uptime': [{ status: 'pass', observedValue: Math.round(process.uptime()), observedUnit: 's', time }],
        'lifecycle:state': [{ status: 'pass', observedValue: state.state, time }],
      }
      return body
    }
    if (kind === 'startup') {
      const status: HealthStatus = started ? 'pass' : 'fail'
      body.status = status
      body.checks = { 'lifecycle:state': [{ status, observedValue: started ? 'started' : 'starting', time }] }
      if (!started) body.output = 'starting'
      return body
    }
    const checks: Record<string, CheckReport[]> = {
      'lifecycle:state': [{ status: state.status, observedValue: state.state, time }],
    }
    body.checks = checks
    if (state.status === 'fail') {
      // Starting or draining: answer at once, without touching dependencies.
      body.status = 'fail'
      body.output = state.state
      return body
    }
    let status: HealthStatus = 'pass'
    const failing: string[] = []
    if (overload !== undefined) {
      const entry = overloadEntry(overload, overloadStatus, time)
      checks['overload:inflight'] = [entry]
      if (entry.status !== 'pass') failing.push('overload')
      status = worst(status, entry.status)
    }
    const results = await Promise.all(runners.map((runner) => runner.result(background)))
    for (const result of results) {
      checks[result.key] = [reportOf(result)]
      if (result.status !== 'pass') failing.push(result.key)
      status = worst(status, result.status)
    }
    body.status = status
    if (failing.length > 0) body.output = `not passing: ${failing.join(', ')}`
    return body
  }

  return {
    routes,
    get started() {
      return started
    },
    markStarted() {
      started = true
    },
    report,
    async answer(kind, request) {
      const startedAt = now()
      const [body, detailed] = await Promise.all([report(kind), isAuthorized(authorize, request)])
      const answer: ProbeAnswer = {
        statusCode: body.status === 'fail' ? 503 : 200,
        headers: HEADERS,
        body: detailed ? body : { status: body.status },
        payload: detailed ? JSON.stringify(body) : PUBLIC_PAYLOADS[body.status],
      }
      if (channels.healthProbe.hasSubscribers) {
        publish(channels.healthProbe, {
          probe: kind,
          outcome: body.status,
          detailed,
          durationSeconds: (now() - startedAt) / 1000,
          request,
        })
      }
      return answer
    },
    close() {
      clearInterval(refresher)
    },
  }
}

async function isAuthorized(authorize: HealthOptions['authorize'], request: RequestView | undefined): Promise<boolean> {
  if (request === undefined) return true
  if (authorize === undefined) return false
  try {
    return (await authorize(request)) === true
  } catch {
    return false // a broken authorize function must not leak details, nor fail the probe
  }
}

function overloadEntry(source: NonNullable<HealthOptions['overload']>, onOverload: HealthStatus, time: string) {
  let state: ReturnType<typeof source.overloadState>
  try {
    state = source.overloadState()
  } catch (error) {
    // Not knowing is not overload: a broken reporter must not take every replica out of rotation.
    return { status: 'warn', time, output: `overloadState() threw: ${String(error)}` } satisfies CheckReport
  }
  const entry: CheckReport = { status: state.overloaded ? onOverload : 'pass', time }
  if (state.inflight !== undefined) {
    entry.observedValue = state.inflight
    entry.observedUnit = 'requests'
  }
  const parts = [...(state.reasons ?? [])]
  if (state.limit !== undefined) parts.push(`limit ${state.limit}`)
  if (parts.length > 0) entry.output = parts.join('; ')
  return entry
}

function reportOf(result: CheckResult): CheckReport {
  const { key: _key, ...report } = result
  return report
}

const RANK: Record<HealthStatus, number> = { pass: 0, warn: 1, fail: 2 }

function worst(a: HealthStatus, b: HealthStatus): HealthStatus {
  return RANK[b] > RANK[a] ? b : a
}

function resolveRoutes(paths: NonNullable<HealthOptions['paths']>): ProbeRoute[] {
  if (typeof paths !== 'object' || paths === null) throw new InvalidOptionError('paths', paths, 'an object')
  const routes: ProbeRoute[] = []
  const seen = new Set<string>()
  for (const kind of ['live', 'ready', 'startup'] as const) {
    const path = paths[kind] ?? DEFAULT_PATHS[kind]
    if (path === false) continue
    if (typeof path !== 'string' || !path.startsWith('/') || /[?#\s]/.test(path)) {
      throw new InvalidOptionError(`paths.${kind}`, path, 'a path starting with "/", or false')
    }
    if (seen.has(path)) throw new InvalidOptionError(`paths.${kind}`, path, 'a path no other probe uses')
    seen.add(path)
    routes.push({ kind, path })
  }
  return routes
}

function resolveInfo(info: HealthInfo): HealthInfo {
  if (typeof info !== 'object' || info === null) throw new InvalidOptionError('info', info, 'an object')
  const resolved: HealthInfo = {}
  for (const field of ['version', 'releaseId', 'serviceId', 'description'] as const) {
    const value = info[field]
    if (value === undefined) continue
    if (typeof value !== 'string') throw new InvalidOptionError(`info.${field}`, value, 'a string')
    resolved[field] = value
  }
  return resolved
}
