// The handler API of a request's lifecycle: one object per request owns its single AbortSignal and its deadline,
// and aborts the signal on whichever comes first — the deadline, the client going away, or process shutdown.
// Deadlines wait in the shared deadline queue; the adapters' hooks on the response are in response-lifecycle.ts.

import { AsyncResource } from 'node:async_hooks'
import type { ServerResponse } from 'node:http'
import type { RejectDecision } from '../decision.js'
import { type AbortKind, DeadlineExceededError, InvalidOptionError, RequestAbortedError } from '../errors.js'
import { channels, publish, type TimeoutDecisionEvent, type TimeoutLateWriteEvent } from '../events.js'
import { monotonicNow } from '../internal/clock.js'
import { DeadlineQueue } from '../internal/deadline-queue.js'
import { onResponseClose, responseClosed, responseFinished } from '../internal/response.js'
import type { RequestView } from '../request-view.js'
import type { RequestLifecycle } from './lifecycle.js'
import { cancelForShutdown, liveNext, livePrev, registerLive, type ShutdownTarget, unregisterLive } from './shutdown.js'

/**
 * The header that carries a request's remaining budget to the next hop, and (when trusted) from the caller:
 * whole milliseconds left, relative — like gRPC's `grpc-timeout` and Envoy's `x-envoy-expected-rq-timeout-ms` —
 * so clock skew between hosts cannot stretch or cut it. No `X-` prefix (RFC 6648). Configurable per policy.
 */
export const DEFAULT_DEADLINE_HEADER = 'Request-Timeout-Ms'

/** Node's timers hold at most a signed 32-bit number of milliseconds; longer timeouts would fire at once. */
export const MAX_TIMEOUT_MS = 2_147_483_647

/**
 * Called when a request's deadline or shutdown hits while it is still open: the adapter answers with `decision`
 * (or, when the response has already started, ends it). `target` is whatever the adapter passed when arming.
 */
export type ExpiryHandler<T> = (decision: RejectDecision, target: T, context: RequestContext) => void

/** What a timeout policy lends the contexts it arms: its name, its forwarding header and its answers. */
export interface ContextPolicy {
  readonly id: string
  readonly header: string
  /** Answer when the deadline hits (503). */
  readonly timedOut: RejectDecision
  /** Answer when shutdown cancels the request (503). */
  readonly shutdown: RejectDecision
}

/** Options of a standalone {@link RequestContext} (outside HTTP: a job, a queue message, a script). */
export interface RequestContextOptions {
  /** Budget in milliseconds from now. Default: none (the signal aborts only on shutdown). */
  timeoutMs?: number
  /** Header name used by `forwardHeaders()`. Default {@link DEFAULT_DEADLINE_HEADER}. */
  header?: string
}

/** @internal The symbol a response (or its holder) keeps its context under. */
export const RESPONSE_CONTEXT = Symbol('breakwater.context')

/** @internal Where a request's context is kept: the response itself, or another per-request object. */
export type ContextHolder = { [RESPONSE_CONTEXT]?: RequestContext }

/**
 * @internal What the lifecycle hooks (response-lifecycle.ts) and policies reach of a context's private state:
 * one object filled in by the class, so a handler sees only the handler-facing API on `req.breakwater`.
 */
export const contextInternals = {} as {
  arm<T>(
    context: RequestContext,
    budgetMs: number,
    policy: ContextPolicy,
    request: RequestView | undefined,
    onExpire: ExpiryHandler<T> | undefined,
    target: T,
    fresh: boolean,
  ): boolean
  settle(context: RequestContext, outcome: TimeoutDecisionEvent['outcome']): boolean
  lateWrite(context: RequestContext, operation: string): void
  expire(context: RequestContext): void
  clientGone(context: RequestContext): void
  leaveUnwatched(context: RequestContext, res: ServerResponse): void
  handlerSettled(context: RequestContext, responseDone: boolean): void
  handlerStarted(context: RequestContext): void
  handedOn(context: RequestContext, responseDone: boolean): void
}

/**
 * Every context's deadline, in the one deadline heap behind one unref'd timer: no timer object per request. A
 * deadline that throws is rethrown on the next tick, so the contexts due behind it still expire.
 */
const deadlines = new DeadlineQueue<RequestContext>((context) => {
  try {
    contextInternals.expire(context)
  } catch (error) {
    process.nextTick(rethrow, error)
  }
})

/**
 * A request's lifecycle: its one `signal`, its absolute `deadline`, and helpers to pass what is left of its budget
 * to outbound calls. Adapters create one per request (`req.breakwater` in Express, `request.breakwater` in
 * Fastify, `ctx.breakwater` in Koa); a handler never needs to create one. The deadline waits in a queue shared by
 * every context, behind one `unref()`'d timer, and leaves it on every exit path: the response closing (finished
 * or not), shutdown, or `dispose()`.
 *
 * @example
 * app.get('/quote', async (req, res) => {
 *   const bw = req.breakwater
 *   bw.requireBudget(50) // fail fast (504) when less than 50 ms are left
 *   const r = await fetch(pricingUrl, { signal: bw.timeoutSignal(300), headers: bw.forwardHeaders() })
 *   res.json(await r.json())
 * })
 */
export class RequestContext implements ShutdownTarget, RequestLifecycle {
  #controller: AbortController | undefined = undefined
  #reason: RequestAbortedError | undefined = undefined
  readonly #startedAt: number
  #budgetMs = Number.POSITIVE_INFINITY
  #expiresAt = Number.POSITIVE_INFINITY
  #deadline: number | undefined = undefined
  /** @internal The deadline queue's bookkeeping (monotonic ms; -1 while not queued). */
  deadlineAt = 0
  /** @internal */
  heapIndex = -1
  #cleanups: Set<() => void> | undefined = undefined
  #policy: ContextPolicy | undefined = undefined
  #request: RequestView | undefined = undefined
  /**
   * The request's async context, kept only while someone subscribes to the timeout channels: a deadline fires
   * from a queue timer armed by whichever request came first, and subscribers (tracing) must hear the outcome in
   * this request's context, not that one's.
   */
  #scope: AsyncResource | undefined = undefined
  #onExpire: ExpiryHandler<unknown> | undefined = undefined
  #target: unknown = undefined
  #outcome: TimeoutDecisionEvent['outcome'] | undefined = undefined
  #header: string
  #open: boolean
  #lateReported = false
  /**
   * The response, while nobody has needed to hear of its `close` yet: the adapter promised to report the end of
   * the handler ({@link handlerSettled}), and a listener is attached only if the signal is read, the deadline or
   * shutdown hits first, or the response is still being written when the handler is done.
   */
  #unwatched: ServerResponse | undefined = undefined
  /** The adapter's handler wrapper has started the handler, which will report its end ({@link handlerStarted}). */
  #handlerStarted = false;
  /** @internal The live list's links (see `registerLive`). */
  [livePrev]: ShutdownTarget | undefined = undefined;
  /** @internal */
  [liveNext]: ShutdownTarget | undefined = undefined

  static {
    contextInternals.arm = (context, budgetMs, policy, request, onExpire, target, fresh) =>
      context.#arm(budgetMs, policy, request, onExpire as ExpiryHandler<unknown> | undefined, target, fresh)
    contextInternals.settle = (context, outcome) => context.#settle(outcome)
    contextInternals.lateWrite = (context, operation) => context.#lateWrite(operation)
    contextInternals.expire = (context) => context.#expire()
    contextInternals.clientGone = (context) => context.#clientGone()
    contextInternals.leaveUnwatched = (context, res) => {
      context.#unwatched = res
    }
    contextInternals.handlerSettled = (context, responseDone) => context.#handlerSettled(responseDone)
    contextInternals.handlerStarted = (context) => {
      context.#handlerStarted = true
    }
    contextInternals.handedOn = (context, responseDone) => {
      if (!context.#handlerStarted) context.#handlerSettled(responseDone)
    }
  }

  /**
   * A context that starts now. Adapters use {@link requestContext} instead, which ties it to a response.
   *
   * @example
   * const context = new RequestContext({ timeoutMs: 5_000 })
   * try { await runJob(context.signal) } finally { context.dispose() }
   */
  constructor(options?: RequestContextOptions) {
    this.#startedAt = monotonicNow()
    this.#header = options?.header ?? DEFAULT_DEADLINE_HEADER
    this.#open = registerLive(this)
    if (!this.#open) {
      this.#abort('shutdown', 'The process is shutting down.')
      return
    }
    const timeoutMs = options?.timeoutMs
    if (timeoutMs !== undefined) {
      if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || timeoutMs > MAX_TIMEOUT_MS) {
        this.dispose()
        throw new InvalidOptionError('timeoutMs', timeoutMs, `a number of milliseconds from 0 to ${MAX_TIMEOUT_MS}`)
      }
      this.#schedule(timeoutMs)
    }
  }

  /**
   * The request's one signal: aborted at the deadline, when the client goes away, or on shutdown. Its `reason`
   * is a {@link RequestAbortedError} whose `kind` says which. Created on first read, so requests whose handlers
   * never look at it cost no AbortController.
   */
  get signal(): AbortSignal {
    // Whoever holds the signal must hear of the client leaving.
    if (this.#unwatched !== undefined) this.#watch()
    let controller = this.#controller
    if (controller === undefined) {
      controller = new AbortController()
      this.#controller = controller
      if (this.#reason !== undefined) controller.abort(this.#reason)
    }
    return controller.signal
  }

  /** Why the signal was aborted (`timeout`, `client-gone`, `shutdown`), or `undefined` while it is not. */
  get abortKind(): AbortKind | undefined {
    return this.#reason?.kind
  }

  /** The signal's abort reason without creating the signal: a {@link RequestAbortedError}, or `undefined`. */
  get abortReason(): RequestAbortedError | undefined {
    return this.#reason
  }

  /** The budget this request was given in ms (the route's timeout, or less from a trusted header); `Infinity` if none. */
  get timeoutMs(): number {
    return this.#budgetMs
  }

  /**
   * The absolute deadline as a Unix epoch in milliseconds (comparable with `Date.now()`), or `Infinity` when the
   * request has no timeout. Prefer {@link remainingMs} for arithmetic: it reads a monotonic clock.
   */
  get deadline(): number {
    if (this.#expiresAt === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
    this.#deadline ??= Date.now() + (this.#expiresAt - monotonicNow())
    return this.#deadline
  }

  /**
   * Milliseconds left before the deadline: `0` once it has passed, `Infinity` when there is none.
   *
   * @example
   * if (req.breakwater.remainingMs() < 100) return res.json(cachedAnswer) // too late for the slow path
   */
  remainingMs(): number {
    const expiresAt = this.#expiresAt
    if (expiresAt === Number.POSITIVE_INFINITY) return expiresAt
    return Math.max(0, expiresAt - monotonicNow())
  }

  /**
   * A signal for one outbound call, like `AbortSignal.timeout(ms)` but bounded by the request: it aborts after
   * `ms` (reason: {@link DeadlineExceededError}, which the timeout middleware answers with 504) or when the
   * request's signal aborts (with the request's reason), whichever comes first. Without `ms`, or when `ms` is
   * beyond the remaining budget, it is the request's own signal. Its timer is cleared when the request ends.
   *
   * @example
   * const res = await fetch(url, { signal: req.breakwater.timeoutSignal(250) })
   */
  timeoutSignal(ms?: number): AbortSignal {
    if (ms === undefined) return this.signal
    checkMs('timeoutSignal(ms)', ms)
    const parent = this.signal
    if (parent.aborted || ms >= this.remainingMs()) return parent
    const remaining = this.remainingMs()
    if (ms === 0) {
      return AbortSignal.abort(new DeadlineExceededError('A zero budget was given for the call.', ms, remaining))
    }
    const child = new AbortController()
    // After the request has ended nothing will run the cleanups; the timer then clears itself when it fires.
    if (this.#open && this.#cleanups === undefined) this.#cleanups = new Set()
    const cleanups = this.#open ? this.#cleanups : undefined
    const cleanup = (): void => {
      clearTimeout(timer)
      parent.removeEventListener('abort', relay)
      cleanups?.delete(cleanup)
    }
    const relay = (): void => {
      cleanup()
      child.abort(parent.reason)
    }
    const timer = setTimeout(() => {
      cleanup()
      child.abort(
        new DeadlineExceededError(
          `The call did not complete within its ${ms} ms budget (${Math.round(remaining)} ms were left).`,
          ms,
          remaining,
        ),
      )
    }, ms)
    timer.unref()
    parent.addEventListener('abort', relay, { once: true })
    cleanups?.add(cleanup)
    return child.signal
  }

  /**
   * Fail fast when less than `ms` of the budget is left: throws {@link DeadlineExceededError} (504 through the
   * timeout middleware), or the abort reason when the request has already been aborted. Use it before an
   * expensive call that cannot finish in time anyway.
   *
   * @example
   * req.breakwater.requireBudget(200) // the report query needs ~200 ms
   */
  requireBudget(ms: number): void {
    checkMs('requireBudget(ms)', ms)
    if (this.#reason !== undefined) throw this.#reason
    const remaining = this.remainingMs()
    if (remaining < ms) {
      throw new DeadlineExceededError(
        `${Math.floor(remaining)} ms of the request's budget are left; ${ms} ms are needed.`,
        ms,
        remaining,
      )
    }
  }

  /**
   * Headers that pass the remaining budget to the next hop: `{ 'Request-Timeout-Ms': '<ms left>' }` (the policy's
   * `header`), or `{}` when the request has no deadline. Whole milliseconds, rounded down.
   *
   * @example
   * await fetch(url, { headers: { ...req.breakwater.forwardHeaders(), accept: 'application/json' } })
   */
  forwardHeaders(): Record<string, string> {
    const remaining = this.remainingMs()
    if (remaining === Number.POSITIVE_INFINITY) return {}
    return { [this.#header]: String(Math.floor(remaining)) }
  }

  /**
   * End the lifecycle: clear the deadline timer and every `timeoutSignal()` timer, stop listening for shutdown,
   * report the outcome. Idempotent. Adapters call it when the response closes; standalone users in `finally`.
   * The signal is left as it is: work that outlives a completed request is not cancelled by this.
   */
  dispose(): void {
    this.#unwatched = undefined
    if (!this.#open) return
    this.#open = false
    unregisterLive(this)
    this.#clear()
    if (this.#outcome === undefined) this.#settle('completed')
  }

  /** @internal Called by `triggerShutdown()`. */
  [cancelForShutdown](): void {
    if (this.#unwatched !== undefined) this.#watch() // a client already gone is not answered 503
    if (!this.#open) return
    this.#open = false
    unregisterLive(this)
    if (this.#reason === undefined) {
      this.#settle('shutdown')
      const policy = this.#policy
      if (policy !== undefined && this.#onExpire !== undefined) this.#onExpire(policy.shutdown, this.#target, this)
      // Abort before clearing, so outstanding timeoutSignal() children hear it through their relays.
      this.#abort('shutdown', 'The request was cancelled because the process is shutting down.')
    }
    this.#clear()
  }

  /** Start listening for the response's `close` (see `#unwatched`); ends the lifecycle now if it has closed. */
  #watch(): void {
    const res = this.#unwatched as ServerResponse
    this.#unwatched = undefined
    if (!this.#open) return
    if (responseClosed(res)) closeContext(res, this)
    else onResponseClose(res, () => closeContext(res, this))
  }

  #handlerSettled(responseDone: boolean): void {
    if (this.#unwatched === undefined) return // watched: the response's close ends the lifecycle
    if (!responseDone) {
      this.#watch() // still being written (a stream, an async onSend hook): time it until it closes
      return
    }
    this.dispose()
  }

  #clientGone(): void {
    if (this.#reason !== undefined) return
    this.#settle('client_gone')
    this.#abort('client-gone', 'The client closed the connection before the response was complete.')
  }

  #arm(
    budgetMs: number,
    policy: ContextPolicy,
    request: RequestView | undefined,
    onExpire: ExpiryHandler<unknown> | undefined,
    target: unknown,
    fresh: boolean,
  ): boolean {
    this.#policy = policy
    this.#header = policy.header
    this.#request = request
    if (
      this.#scope === undefined &&
      (channels.timeoutDecision.hasSubscribers || channels.timeoutLateWrite.hasSubscribers)
    ) {
      this.#scope = new AsyncResource('breakwater:timeout')
    }
    this.#onExpire = onExpire
    this.#target = target
    if (!this.#open) return this.#reason === undefined
    if (fresh && budgetMs > 0) {
      // Created by this very call: no earlier deadline to clear, and its start is now (one clock read a request).
      this.#schedule(budgetMs)
      return true
    }
    this.#clearDeadline()
    // A later (per-route) policy replaces the earlier one's budget, counted from the start of the request.
    const left = this.#startedAt + budgetMs - monotonicNow()
    if (left <= 0) {
      this.#budgetMs = budgetMs
      this.#expiresAt = this.#startedAt + budgetMs
      this.#deadline = undefined
      this.#settle('timed_out')
      this.#abort('timeout', `The request did not complete within its ${budgetMs} ms budget.`)
      return false
    }
    this.#schedule(budgetMs)
    return true
  }

  /** Expire `budgetMs` after the start. */
  #schedule(budgetMs: number): void {
    this.#budgetMs = budgetMs
    this.#expiresAt = this.#startedAt + budgetMs
    this.#deadline = undefined
    deadlines.add(this, this.#expiresAt)
  }

  #clearDeadline(): void {
    deadlines.remove(this)
  }

  /** The deadline queue expires a context at its deadline, never before (remainingMs() reads 0 once aborted). */
  #expire(): void {
    if (this.#unwatched !== undefined) this.#watch() // a client already gone ends the lifecycle here, unanswered
    if (this.#reason !== undefined || !this.#open) return
    this.#settle('timed_out')
    const policy = this.#policy
    // Answer first, then abort: a handler reacting to the abort synchronously then writes late (harmlessly),
    // instead of racing the 503.
    if (policy !== undefined && this.#onExpire !== undefined) this.#onExpire(policy.timedOut, this.#target, this)
    this.#abort('timeout', `The request did not complete within its ${this.#budgetMs} ms budget.`)
  }

  #abort(kind: AbortKind, message: string): void {
    if (this.#reason !== undefined) return
    const reason = new RequestAbortedError(kind, message)
    this.#reason = reason
    this.#controller?.abort(reason)
  }

  #clear(): void {
    this.#clearDeadline()
    const cleanups = this.#cleanups
    if (cleanups !== undefined) {
      for (const cleanup of cleanups) cleanup()
      this.#cleanups = undefined
    }
  }

  /** Record the outcome once and publish it; false when one was already recorded. */
  #settle(outcome: TimeoutDecisionEvent['outcome']): boolean {
    if (this.#outcome !== undefined) return false
    this.#outcome = outcome
    const policy = this.#policy
    if (policy !== undefined && channels.timeoutDecision.hasSubscribers) {
      this.#publish(channels.timeoutDecision, {
        policy: policy.id,
        outcome,
        timeoutSeconds: this.#budgetMs / 1000,
        durationSeconds: (monotonicNow() - this.#startedAt) / 1000,
        request: this.#request,
      } satisfies TimeoutDecisionEvent)
    }
    return true
  }

  /** Publish in the request's own async context (see `#scope`). */
  #publish(channel: typeof channels.timeoutDecision, message: TimeoutDecisionEvent | TimeoutLateWriteEvent): void {
    const scope = this.#scope
    if (scope === undefined) publish(channel, message)
    else scope.runInAsyncScope(publish, undefined, channel, message)
  }

  #lateWrite(operation: string): void {
    if (this.#lateReported) return
    this.#lateReported = true
    const policy = this.#policy
    if (policy !== undefined && channels.timeoutLateWrite.hasSubscribers) {
      this.#publish(channels.timeoutLateWrite, {
        policy: policy.id,
        outcome: 'late_write',
        operation,
        lateSeconds: Math.max(0, monotonicNow() - this.#expiresAt) / 1000,
        request: this.#request,
      } satisfies TimeoutLateWriteEvent)
    }
  }
}

/** @internal Contexts waiting for their deadline: a leak check for tests. */
export function deadlineQueueStats(): { queues: number; waiting: number } {
  return { queues: deadlines.size === 0 ? 0 : 1, waiting: deadlines.size }
}

function rethrow(error: unknown): never {
  throw error
}

function checkMs(what: string, ms: unknown): void {
  if (typeof ms !== 'number' || !(ms >= 0)) throw new InvalidOptionError(what, ms, 'a number of milliseconds ≥ 0')
}

/** @internal The response closed: a client gone if it had not finished; the lifecycle ends either way. */
export function closeContext(res: ServerResponse, context: RequestContext): void {
  if (!responseFinished(res)) contextInternals.clientGone(context)
  context.dispose()
}
