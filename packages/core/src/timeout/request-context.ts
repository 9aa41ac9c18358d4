// One lifecycle object per request: it owns the request's single AbortSignal and its deadline timer, and aborts
// the signal on whichever comes first — the deadline, the client going away, or process shutdown.

import { AsyncResource } from 'node:async_hooks'
import type { ServerResponse } from 'node:http'
import type { RejectDecision } from '../decision.js'
import { type AbortKind, DeadlineExceededError, InvalidOptionError, RequestAbortedError } from '../errors.js'
import { channels, publish, type TimeoutDecisionEvent, type TimeoutLateWriteEvent } from '../events.js'
import { monotonicNow } from '../internal/clock.js'
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

const RESPONSE_CONTEXT = Symbol('breakwater.context')

/**
 * Contexts sharing one budget, in deadline order, behind one unref'd timer armed for the earliest. Requests with
 * the same budget expire in the order they started, so arming is an append and ending an unlink: no timer object
 * per request. The timer is not moved when the head ends early; it fires, finds the new head and re-arms.
 */
interface DeadlineQueue {
  readonly budgetMs: number
  head: RequestContext | undefined
  tail: RequestContext | undefined
  timer: NodeJS.Timeout | undefined
  timerAt: number
}

/** One queue per distinct budget; past this many (budgets from trusted callers' headers), a context times itself. */
const MAX_QUEUES = 32
const queues = new Map<number, DeadlineQueue>()

type ContextHolder = { [RESPONSE_CONTEXT]?: RequestContext }

// Static hooks filled in by the class below: policies and adapters reach private state through these module
// functions instead of public methods, so a handler sees only the handler-facing API on `req.breakwater`.
let armImpl: <T>(
  context: RequestContext,
  budgetMs: number,
  policy: ContextPolicy,
  request: RequestView | undefined,
  onExpire: ExpiryHandler<T> | undefined,
  target: T,
  fresh: boolean,
) => boolean
let settleImpl: (context: RequestContext, outcome: TimeoutDecisionEvent['outcome']) => boolean
let lateWriteImpl: (context: RequestContext, operation: string) => void
let expireImpl: (context: RequestContext) => void
let fireQueueImpl: (queue: DeadlineQueue) => void
let waitingIn: (queue: DeadlineQueue) => number
let clientGoneImpl: (context: RequestContext) => void
let leaveUnwatchedImpl: (context: RequestContext, res: ServerResponse) => void
let handlerSettledImpl: (context: RequestContext, responseDone: boolean) => void
let handlerStartedImpl: (context: RequestContext) => void
let handedOnImpl: (context: RequestContext, responseDone: boolean) => void

/**
 * A request's lifecycle: its one `signal`, its absolute `deadline`, and helpers to pass what is left of its budget
 * to outbound calls. Adapters create one per request (`req.breakwater` in Express, `request.breakwater` in
 * Fastify, `ctx.breakwater` in Koa); a handler never needs to create one. The deadline waits in a queue shared by
 * every context with the same budget, behind one `unref()`'d timer, and leaves it on every exit path: the
 * response closing (finished or not), shutdown, or `dispose()`.
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
  /** Own timer, only when no deadline queue could take this context. */
  #timer: NodeJS.Timeout | undefined = undefined
  #queue: DeadlineQueue | undefined = undefined
  #prev: RequestContext | undefined = undefined
  #next: RequestContext | undefined = undefined
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
    armImpl = (context, budgetMs, policy, request, onExpire, target, fresh) =>
      context.#arm(budgetMs, policy, request, onExpire as ExpiryHandler<unknown> | undefined, target, fresh)
    settleImpl = (context, outcome) => context.#settle(outcome)
    lateWriteImpl = (context, operation) => context.#lateWrite(operation)
    expireImpl = (context) => context.#expire()
    fireQueueImpl = (queue) => RequestContext.#fire(queue)
    waitingIn = (queue) => {
      let count = 0
      for (let context = queue.head; context !== undefined; context = context.#next) count++
      return count
    }
    clientGoneImpl = (context) => context.#clientGone()
    leaveUnwatchedImpl = (context, res) => {
      context.#unwatched = res
    }
    handlerSettledImpl = (context, responseDone) => context.#handlerSettled(responseDone)
    handlerStartedImpl = (context) => {
      context.#handlerStarted = true
    }
    handedOnImpl = (context, responseDone) => {
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
      this.#schedule(timeoutMs, timeoutMs)
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
      this.#schedule(budgetMs, budgetMs)
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
    this.#schedule(budgetMs, left)
    return true
  }

  /** Expire `budgetMs` after the start, `ms` from now: in the queue of that budget, else on a timer of its own. */
  #schedule(budgetMs: number, ms: number): void {
    this.#budgetMs = budgetMs
    this.#expiresAt = this.#startedAt + budgetMs
    this.#deadline = undefined
    if (this.#enqueue(budgetMs)) return
    // The context rides on the timer's arguments instead of a closure; unref so a pending deadline never keeps
    // the process alive.
    const timer = setTimeout(onDeadline, ms, this)
    timer.unref()
    this.#timer = timer
  }

  #enqueue(budgetMs: number): boolean {
    let queue = queues.get(budgetMs)
    if (queue === undefined) {
      if (queues.size >= MAX_QUEUES) return false
      queue = { budgetMs, head: undefined, tail: undefined, timer: undefined, timerAt: Number.POSITIVE_INFINITY }
      queues.set(budgetMs, queue)
    }
    this.#queue = queue
    const expiresAt = this.#expiresAt
    // Almost always an append: only a context armed after a later-started one walks back.
    let before = queue.tail
    while (before !== undefined && before.#expiresAt > expiresAt) before = before.#prev
    const after = before === undefined ? queue.head : before.#next
    this.#prev = before
    this.#next = after
    if (before === undefined) queue.head = this
    else before.#next = this
    if (after === undefined) queue.tail = this
    else after.#prev = this
    if (expiresAt < queue.timerAt) armQueue(queue, expiresAt)
    return true
  }

  #dequeue(): void {
    const queue = this.#queue
    if (queue === undefined) return
    const prev = this.#prev
    const next = this.#next
    if (prev === undefined) queue.head = next
    else prev.#next = next
    if (next === undefined) queue.tail = prev
    else next.#prev = prev
    this.#queue = undefined
    this.#prev = undefined
    this.#next = undefined
  }

  /** A queue's timer: expire every context whose deadline has come, then re-arm for the next one. */
  static #fire(queue: DeadlineQueue): void {
    queue.timer = undefined
    queue.timerAt = Number.POSITIVE_INFINITY
    const now = monotonicNow()
    let head = queue.head
    // libuv may fire up to ~1 ms early: a context is never expired before its deadline.
    while (head !== undefined && head.#expiresAt <= now) {
      head.#dequeue()
      try {
        head.#expire()
      } catch (error) {
        process.nextTick(rethrow, error) // surface it as before, without starving the contexts behind it
      }
      head = queue.head
    }
    if (head !== undefined) armQueue(queue, head.#expiresAt)
    else queues.delete(queue.budgetMs) // empty: the next context of this budget starts a new queue
  }

  #clearDeadline(): void {
    this.#dequeue()
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }

  #expire(): void {
    this.#timer = undefined
    if (this.#unwatched !== undefined) this.#watch() // a client already gone ends the lifecycle here, unanswered
    if (this.#reason !== undefined || !this.#open) return
    // libuv caches loop time in whole milliseconds, so a timer may fire up to ~1 ms early: never abort before the
    // deadline (remainingMs() must read 0 once aborted).
    const early = this.#expiresAt - monotonicNow()
    if (early > 0) {
      const timer = setTimeout(onDeadline, Math.ceil(early), this)
      timer.unref()
      this.#timer = timer
      return
    }
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

function onDeadline(context: RequestContext): void {
  expireImpl(context)
}

function armQueue(queue: DeadlineQueue, at: number): void {
  if (queue.timer !== undefined) clearTimeout(queue.timer)
  queue.timerAt = at
  const timer = setTimeout(fireQueueImpl, Math.max(1, Math.ceil(at - monotonicNow())), queue)
  timer.unref()
  queue.timer = timer
}

/** @internal Deadline queues and the contexts waiting in them: a leak check for tests. */
export function deadlineQueueStats(): { queues: number; waiting: number } {
  let waiting = 0
  for (const queue of queues.values()) waiting += waitingIn(queue)
  return { queues: queues.size, waiting }
}

function rethrow(error: unknown): never {
  throw error
}

function checkMs(what: string, ms: unknown): void {
  if (typeof ms !== 'number' || !(ms >= 0)) throw new InvalidOptionError(what, ms, 'a number of milliseconds ≥ 0')
}

/**
 * The {@link RequestContext} of a response, created on first use and shared by everything on the same request
 * (the request view's `signal`, the timeout middleware, the handler). It watches the response: closing before
 * it finished means the client went away (the request's `close` is not used — it fires once the body has been
 * read); closing at all ends the lifecycle and clears its timers.
 *
 * `holder` is where the context is kept for later lookups, under a symbol: the response itself by default.
 * Pass another per-request object when adding a property to the response is costly — Express's `res.locals`,
 * a dictionary already: each property added to Express's `req` or `res` costs that request several µs. Every
 * call for one request must pass the same holder. With a holder other than `res`, the response's `close`
 * listener keeps its own reference to the context, so the lifecycle ends even if the holder is replaced.
 *
 * @example
 * // in an adapter's request view
 * get signal() { return requestContext(this.#res).signal }
 */
export function requestContext(res: ServerResponse, holder: object = res): RequestContext {
  return (holder as ContextHolder)[RESPONSE_CONTEXT] ?? createContext(res, holder, true)
}

function createContext(res: ServerResponse, holder: object, watch: boolean): RequestContext {
  const context = new RequestContext()
  ;(holder as ContextHolder)[RESPONSE_CONTEXT] = context
  if (!watch) {
    leaveUnwatchedImpl(context, res)
    return context
  }
  const onClose = holder === res ? onContextResponseClose : (): void => closeContext(res, context)
  if (responseClosed(res)) onClose.call(res)
  else onResponseClose(res, onClose)
  return context
}

/** The context of a response if one was created, without creating one (`holder` as for {@link requestContext}). */
export function existingRequestContext(res: ServerResponse, holder: object = res): RequestContext | undefined {
  return (holder as ContextHolder)[RESPONSE_CONTEXT]
}

// One shared listener for every response kept on itself: `this` is the response, so nothing is allocated.
function onContextResponseClose(this: ServerResponse): void {
  const context = (this as ContextHolder)[RESPONSE_CONTEXT]
  if (context !== undefined) closeContext(this, context)
}

function closeContext(res: ServerResponse, context: RequestContext): void {
  if (!responseFinished(res)) clientGoneImpl(context)
  context.dispose()
}

/** @internal Give `context` a budget of `budgetMs` from its start under `policy`; false when already over it. */
export function armContext<T>(
  context: RequestContext,
  budgetMs: number,
  policy: ContextPolicy,
  request: RequestView | undefined,
  onExpire: ExpiryHandler<T> | undefined,
  target: T,
): boolean {
  return armImpl(context, budgetMs, policy, request, onExpire, target, false)
}

/**
 * @internal {@link requestContext} of `res` armed as {@link armContext} does, reading the clock once when the
 * context is created here (the common case: the timeout middleware is the first to ask for it). With `watch`
 * false a context created here does not listen to the response until it needs to: the adapter then reports the
 * end of the handler with {@link handlerSettled}. A request already over budget (or arriving during shutdown)
 * listens at once: it gets no handler.
 */
export function armResponseContext<T>(
  res: ServerResponse,
  holder: object,
  budgetMs: number,
  policy: ContextPolicy,
  request: RequestView | undefined,
  onExpire: ExpiryHandler<T>,
  target: T,
  watch: boolean,
): RequestContext {
  const existing = (holder as ContextHolder)[RESPONSE_CONTEXT]
  const context = existing ?? createContext(res, holder, watch)
  const inBudget = armImpl(context, budgetMs, policy, request, onExpire, target, existing === undefined)
  // Over budget on arrival (or shutting down): the adapter answers now and no handler will run to report its end,
  // so the lifecycle ends when the response closes.
  if (!inBudget) handlerSettledImpl(context, false)
  return context
}

/**
 * For adapters that started a timeout with `settledByHandler` (see `Timeout.start`): the handler is done.
 * `responseDone` says whether the response has been written in full (or will be, synchronously, as Koa does once
 * its middleware chain settles); the lifecycle then ends here, without a listener on the response ever having
 * been attached. Otherwise (a stream still flowing, an asynchronous `onSend`) it ends when the response closes.
 * Does nothing for a context that already listens to its response.
 *
 * @example
 * return next().then(() => handlerSettled(context, !isStreamedBody(ctx.body)))
 */
export function handlerSettled(context: RequestContext, responseDone: boolean): void {
  handlerSettledImpl(context, responseDone)
}

/**
 * For adapters whose handler wrapper reports the end of the handler (Fastify): the wrapper is running the
 * handler now. See {@link handedOn}.
 */
export function handlerStarted(context: RequestContext): void {
  handlerStartedImpl(context)
}

/**
 * For adapters whose handler wrapper reports the end of the handler: the hook that started the timeout has handed
 * the request on and control is back. If no handler has started by now, it may never start (a later hook
 * answered, or the rest runs asynchronously and may fail before it): the lifecycle then ends here when
 * `responseDone`, else when the response closes, as {@link handlerSettled} does. Does nothing once the handler
 * has started; the handler reports its own end.
 *
 * @example
 * done()
 * handedOn(context, reply.raw.writableEnded)
 */
export function handedOn(context: RequestContext, responseDone: boolean): void {
  handedOnImpl(context, responseDone)
}

/** @internal Report that the client went away (for hosts without a node:http response). */
export function reportClientGone(context: RequestContext): void {
  clientGoneImpl(context)
}

/** @internal Record an outcome decided outside the context (a 504 mapping); false if one was recorded already. */
export function settleContext(context: RequestContext, outcome: TimeoutDecisionEvent['outcome']): boolean {
  return settleImpl(context, outcome)
}

/**
 * Report, once per request, that a handler answered after its request had been answered at the deadline
 * (published on `breakwater:timeout:late-write`). For adapters whose framework swallows such writes itself, e.g.
 * a Fastify handler resolving a payload after the 503; raw response writes are reported by `guardLateWrites`.
 *
 * @example
 * if (reply.sent && context.abortReason !== undefined) reportLateWrite(context, 'send')
 */
export function reportLateWrite(context: RequestContext, operation: string): void {
  lateWriteImpl(context, operation)
}
