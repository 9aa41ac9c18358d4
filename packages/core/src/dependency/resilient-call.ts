// Retries and hedges over guarded attempts. One object per call decides, after each attempt, whether to answer,
// to wait and retry, or to launch a hedge — within the caller's deadline, the attempts allowed and the retry
// budget — and frees every answer it does not return.

import { FAILURE } from '../circuit-breaker/circuit-breaker.js'
import {
  DeadlineExceededError,
  isAttemptTimeoutError,
  isBulkheadFullError,
  isCircuitOpenError,
  isDeadlineExceededError,
  isRequestAbortedError,
} from '../errors.js'
import {
  channels,
  type DependencyCallEvent,
  type HedgeLaunchedEvent,
  type HedgeSettledEvent,
  publish,
  type RetryBudgetExhaustedEvent,
  type RetryScheduledEvent,
} from '../events.js'
import type { ExecuteOptions, Work } from '../execute/policy.js'
import { markRetriesExhausted } from '../fallback/reason.js'
import type { LatencyQuantile } from '../hedge/latency-quantile.js'
import type { Clock } from '../internal/clock.js'
import { type BackoffKind, backoffDelay } from '../retry/backoff.js'
import type { RetryBudget } from '../retry/budget.js'
import { isRetryableError, isRetryableResult, type Outcome, retryAfterMs, statusOf } from '../retry/classify.js'
import { type AttemptOwner, type GuardedCall, newAttempt, runGuarded, type Stack } from './guarded-call.js'

/** @internal Resolved retry options. */
export interface RetryPlan {
  /** Attempts in all, the first included. */
  readonly attempts: number
  readonly backoff: BackoffKind
  readonly baseMs: number
  readonly capMs: number
  readonly maxRetryAfterMs: number
  readonly random: () => number
}

/** @internal Resolved hedge options. */
export interface HedgePlan {
  /** The fixed delay, or `NaN` to use {@link latency}. */
  readonly delayMs: number
  readonly latency: LatencyQuantile | undefined
  readonly minSamples: number
  readonly maxHedges: number
}

/** @internal What a retrying/hedging policy or dependency runs its calls with. */
export interface Engine {
  readonly name: string
  /** The stack each attempt runs through (publishes no call events of its own). */
  readonly attempts: Stack
  /** The stack a non-idempotent call runs through, once. */
  readonly single: Stack
  readonly retry: RetryPlan | undefined
  readonly hedge: HedgePlan | undefined
  /** `undefined`: {@link isRetryableOutcome}. */
  readonly retryOn: ((outcome: Outcome) => boolean) | undefined
  readonly discard: (result: unknown) => void
  readonly budget: RetryBudget | undefined
  /** Publish `breakwater:dependency:call` once per call. */
  readonly publishCalls: boolean
  readonly clock: Clock
}

const NONE = 0
const ERROR = 1
const RESULT = 2

/** The abort reason of an attempt that lost to another. */
let hedgeLost: DOMException | undefined

/** The call being constructed by `new Promise(takeSettlers)`: no closure per call for the executor. */
let constructing: ResilientCall<unknown> | undefined
function takeSettlers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  const call = constructing as ResilientCall<unknown>
  call.resolve = resolve
  call.reject = reject
}

/** @internal Run `work` with the engine's retries and hedges; non-idempotent work runs once. */
export function runResilient<T>(engine: Engine, work: Work<T>, options: ExecuteOptions | undefined): Promise<T> {
  if (options?.idempotent === false) return runGuarded(engine.single, work, options)
  const call = new ResilientCall<T>(engine, work, options)
  constructing = call as ResilientCall<unknown>
  const promise = new Promise<T>(takeSettlers as (resolve: (value: T) => void, reject: (e: unknown) => void) => void)
  constructing = undefined
  call.start()
  return promise
}

class ResilientCall<T> implements AttemptOwner {
  resolve: (value: T) => void = noop
  reject: (error: unknown) => void = noop
  readonly #engine: Engine
  readonly #work: Work<T>
  readonly #options: ExecuteOptions | undefined
  readonly #callerSignal: AbortSignal | undefined
  #launched = 0
  #retries = 0
  #hedges = 0
  #inflight = 0
  /** Attempts in flight, kept only when hedging (they may need cancelling). */
  #running: GuardedCall<unknown>[] | undefined = undefined
  #primary: GuardedCall<unknown> | undefined = undefined
  #lastKind = NONE
  #last: unknown = undefined
  #previousDelayMs = 0
  #sleepTimer: ReturnType<typeof setTimeout> | undefined = undefined
  #hedgeTimer: ReturnType<typeof setTimeout> | undefined = undefined
  #onAbort: (() => void) | undefined = undefined
  #done = false
  #startedAt = Number.NaN

  constructor(engine: Engine, work: Work<T>, options: ExecuteOptions | undefined) {
    this.#engine = engine
    this.#work = work
    this.#options = options
    this.#callerSignal = options?.context?.signal ?? options?.signal
  }

  start(): void {
    const engine = this.#engine
    if (engine.publishCalls && channels.dependencyCall.hasSubscribers) this.#startedAt = engine.clock()
    engine.budget?.recordFirst()
    if (engine.hedge !== undefined) this.#running = []
    this.#launch()
    if (!this.#done && engine.hedge !== undefined) this.#armHedge()
  }

  attemptSucceeded(call: GuardedCall<unknown>, value: unknown): void {
    this.#forget(call)
    if (this.#done) {
      this.#engine.discard(value)
      return
    }
    const retryOn = this.#engine.retryOn
    if (retryOn === undefined ? isRetryableResult(value) : retryOn({ result: value })) {
      this.#failedRetryably(RESULT, value)
    } else this.#win(call, value as T)
  }

  attemptFailed(call: GuardedCall<unknown>, error: unknown): void {
    this.#forget(call)
    if (this.#done) return
    // The caller's own abort: never retried.
    if (this.#callerSignal?.aborted) {
      this.#finishError(error)
      return
    }
    // A hedge the breaker or bulkhead refused: the attempts still running may answer.
    if (this.#inflight > 0 && (isCircuitOpenError(error) || isBulkheadFullError(error))) return
    const retryOn = this.#engine.retryOn
    if (retryOn === undefined ? isRetryableError(error) : retryOn({ error })) this.#failedRetryably(ERROR, error)
    else this.#finishError(error)
  }

  #launch(): void {
    const attempt = ++this.#launched
    const options = this.#options
    let attemptOptions = options
    if (attempt > 1) {
      const context = options?.context
      attemptOptions =
        context === undefined ? { signal: options?.signal, deadline: options?.deadline, attempt } : { context, attempt }
    }
    const call = newAttempt(this.#engine.attempts, this.#work, attemptOptions, this) as GuardedCall<unknown>
    this.#inflight++
    const running = this.#running
    if (running !== undefined) {
      running.push(call)
      if (attempt === 1) this.#primary = call
      if (this.#engine.hedge?.latency !== undefined) call.launchedAt = this.#engine.clock()
    }
    call.start()
  }

  #forget(call: GuardedCall<unknown>): void {
    this.#inflight--
    const running = this.#running
    if (running === undefined) return
    const index = running.indexOf(call)
    if (index >= 0) running.splice(index, 1)
  }

  /** An attempt failed in a way worth another try: hedge at once, wait for the others, retry, or give up. */
  #failedRetryably(kind: typeof ERROR | typeof RESULT, value: unknown): void {
    if (this.#lastKind === RESULT && this.#last !== value) this.#engine.discard(this.#last)
    this.#lastKind = kind
    this.#last = value
    const hedge = this.#engine.hedge
    if (hedge !== undefined && this.#hedges < hedge.maxHedges && this.#tryHedge('failure')) return
    if (this.#inflight > 0) return
    this.#scheduleRetry()
  }

  #scheduleRetry(): void {
    const engine = this.#engine
    const plan = engine.retry
    if (plan === undefined || this.#retries >= plan.attempts - 1) {
      this.#finishLast()
      return
    }
    const breaker = engine.attempts.breaker
    // No retry into an open breaker: the call ends with its CircuitOpenError now, not after the backoff.
    if (breaker !== undefined && !breaker.admits()) {
      this.#finishError(breaker.rejection())
      return
    }
    const outcome: Outcome = this.#lastKind === RESULT ? { result: this.#last } : { error: this.#last }
    const asked = retryAfterMs(outcome)
    const delayMs =
      asked === undefined
        ? backoffDelay(plan.backoff, this.#retries, this.#previousDelayMs, plan.baseMs, plan.capMs, plan.random)
        : Math.min(asked, plan.maxRetryAfterMs)
    // Never sleep past the caller's deadline: a wait it cannot afford (a long Retry-After included) ends the call.
    if ((asked ?? delayMs) >= this.#remainingMs()) {
      this.#finishLast()
      return
    }
    if (engine.budget !== undefined && !engine.budget.tryRetry()) {
      this.#budgetExhausted('retry')
      this.#finishLast()
      return
    }
    this.#retries++
    this.#previousDelayMs = delayMs
    if (channels.retryScheduled.hasSubscribers) this.#publishScheduled(delayMs, asked !== undefined)
    const signal = this.#callerSignal
    if (signal !== undefined) {
      this.#onAbort = () => this.#finishError(signal.reason)
      signal.addEventListener('abort', this.#onAbort, { once: true })
    }
    this.#sleepTimer = setTimeout(() => {
      this.#sleepTimer = undefined
      this.#unlisten()
      if (!this.#done) this.#launch()
    }, delayMs)
    this.#sleepTimer.unref?.()
  }

  /** Start the hedge timer, when the delay is known and within the caller's deadline. */
  #armHedge(): void {
    const hedge = this.#engine.hedge as HedgePlan
    if (this.#hedges >= hedge.maxHedges) return
    let delayMs = hedge.delayMs
    if (Number.isNaN(delayMs)) {
      const latency = hedge.latency as LatencyQuantile
      if (latency.count < hedge.minSamples) return // no estimate yet: no hedge rather than a guess
      delayMs = latency.value()
    }
    if (delayMs >= this.#remainingMs()) return
    this.#hedgeTimer = setTimeout(() => {
      this.#hedgeTimer = undefined
      if (!this.#done) this.#tryHedge('delay')
    }, delayMs)
    this.#hedgeTimer.unref?.()
  }

  /** Launch a hedge if the breaker is closed, the deadline not passed and the budget allows it. */
  #tryHedge(trigger: HedgeLaunchedEvent['trigger']): boolean {
    const engine = this.#engine
    const breaker = engine.attempts.breaker
    // Not while half-open or open: the probes decide, and a sick dependency gets no extra load.
    if (breaker !== undefined && !breaker.closed) return false
    if (!(this.#remainingMs() > 0)) return false
    if (engine.budget !== undefined && !engine.budget.tryRetry()) {
      this.#budgetExhausted('hedge')
      return false
    }
    const hedge = ++this.#hedges
    if (this.#hedgeTimer !== undefined) {
      clearTimeout(this.#hedgeTimer)
      this.#hedgeTimer = undefined
    }
    if (channels.hedgeLaunched.hasSubscribers) {
      publish(channels.hedgeLaunched, { policy: engine.name, hedge, trigger } satisfies HedgeLaunchedEvent)
    }
    this.#launch()
    if (!this.#done) this.#armHedge()
    return true
  }

  #remainingMs(): number {
    const options = this.#options
    const context = options?.context
    if (context !== undefined) {
      return typeof context.remainingMs === 'function' ? context.remainingMs() : context.deadline - Date.now()
    }
    const deadline = options?.deadline
    return deadline === undefined ? Number.POSITIVE_INFINITY : deadline - Date.now()
  }

  #win(call: GuardedCall<unknown>, value: T): void {
    this.#end(call)
    const engine = this.#engine
    if (this.#lastKind === RESULT && this.#last !== value) engine.discard(this.#last)
    const latency = engine.hedge?.latency
    if (latency !== undefined) latency.record(engine.clock() - call.launchedAt)
    if (this.#hedges > 0 && channels.hedgeSettled.hasSubscribers) {
      publish(channels.hedgeSettled, {
        policy: engine.name,
        winner: call === this.#primary ? 'primary' : 'hedge',
      } satisfies HedgeSettledEvent)
    }
    if (!Number.isNaN(this.#startedAt)) {
      const failed = engine.attempts.breaker?.classifyResult(value) === FAILURE
      this.#publishCall(failed ? 'failure' : 'success')
    }
    this.resolve(value)
  }

  /** No more attempts: the last outcome is the answer (a retryable result is returned as it is). */
  #finishLast(): void {
    if (this.#lastKind === RESULT) {
      const value = this.#last as T
      this.#lastKind = NONE
      this.#end(undefined)
      if (!Number.isNaN(this.#startedAt)) this.#publishCall('failure')
      this.resolve(value)
      return
    }
    // Marked so a fallback / stale-if-error above says `retries-exhausted` rather than the last error's kind.
    if (this.#lastKind === ERROR && this.#engine.retry !== undefined) markRetriesExhausted(this.#last, this.#launched)
    this.#finishError(
      this.#lastKind === ERROR
        ? this.#last
        : new DeadlineExceededError(`No budget was left for the call to "${this.#engine.name}".`, 0, 0),
    )
  }

  #finishError(error: unknown): void {
    if (this.#done) return
    this.#end(undefined, error)
    if (this.#lastKind === RESULT) this.#engine.discard(this.#last)
    if (!Number.isNaN(this.#startedAt)) this.#publishCall(this.#labelOf(error))
    this.reject(error)
  }

  /** Over: timers and listeners go, the attempts still running are cancelled. */
  #end(winner: GuardedCall<unknown> | undefined, reason?: unknown): void {
    this.#done = true
    if (this.#sleepTimer !== undefined) clearTimeout(this.#sleepTimer)
    if (this.#hedgeTimer !== undefined) clearTimeout(this.#hedgeTimer)
    this.#sleepTimer = undefined
    this.#hedgeTimer = undefined
    this.#unlisten()
    const running = this.#running
    if (running === undefined || running.length === 0) return
    hedgeLost ??= new DOMException('Another attempt answered first.', 'AbortError')
    for (const other of running.splice(0)) if (other !== winner) other.cancel(reason ?? hedgeLost)
    this.#inflight = 0
  }

  #unlisten(): void {
    if (this.#onAbort === undefined) return
    ;(this.#callerSignal as AbortSignal).removeEventListener('abort', this.#onAbort)
    this.#onAbort = undefined
  }

  #labelOf(error: unknown): DependencyCallEvent['outcome'] {
    if (this.#callerSignal?.aborted || isRequestAbortedError(error)) return 'aborted'
    if (isCircuitOpenError(error)) return 'circuit_open'
    if (isBulkheadFullError(error)) return 'bulkhead_full'
    if (isAttemptTimeoutError(error)) return 'timed_out'
    if (isDeadlineExceededError(error)) return 'deadline_exceeded'
    return 'failure'
  }

  #budgetExhausted(kind: RetryBudgetExhaustedEvent['kind']): void {
    if (!channels.retryBudgetExhausted.hasSubscribers) return
    publish(channels.retryBudgetExhausted, { policy: this.#engine.name, kind } satisfies RetryBudgetExhaustedEvent)
  }

  #publishScheduled(delayMs: number, retryAfter: boolean): void {
    const last = this.#last
    const status = this.#lastKind === RESULT ? statusOf(last) : undefined
    publish(channels.retryScheduled, {
      policy: this.#engine.name,
      attempt: this.#launched + 1,
      delayMs,
      reason: this.#lastKind === RESULT ? 'status' : isAttemptTimeoutError(last) ? 'timed_out' : 'error',
      status,
      retryAfter,
    } satisfies RetryScheduledEvent)
  }

  #publishCall(outcome: DependencyCallEvent['outcome']): void {
    if (!channels.dependencyCall.hasSubscribers) return
    publish(channels.dependencyCall, {
      policy: this.#engine.name,
      outcome,
      attempts: this.#launched,
      durationSeconds: (this.#engine.clock() - this.#startedAt) / 1000,
    } satisfies DependencyCallEvent)
  }
}

function noop(): void {}
