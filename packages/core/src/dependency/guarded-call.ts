// One call through a stack of outbound policies, in the fixed order circuit breaker → bulkhead → attempt
// timeout → work. Each policy's own `execute` is this engine with only its layer, and `dependency()` is all three
// at once: one object per call that is also the work's context, its bulkhead queue entry and its timer entry.

import type { Bulkhead } from '../bulkhead/bulkhead.js'
import {
  type CallOutcome,
  type CircuitBreaker,
  FAILURE,
  IGNORED,
  REJECTED,
  SUCCESS,
} from '../circuit-breaker/circuit-breaker.js'
import type { Waiter } from '../concurrency/concurrency-limiter.js'
import {
  AttemptTimeoutError,
  DeadlineExceededError,
  isAttemptTimeoutError,
  isBulkheadFullError,
  isDeadlineExceededError,
  isRequestAbortedError,
} from '../errors.js'
import { channels, type DependencyAttemptEvent, type DependencyCallEvent, publish } from '../events.js'
import type { ExecuteContext, ExecuteOptions, Work } from '../execute/policy.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { DeadlineQueue } from '../internal/deadline-queue.js'

/** @internal The layers of one policy or dependency. */
export interface Stack {
  readonly name: string
  readonly breaker: CircuitBreaker | undefined
  readonly bulkhead: Bulkhead | undefined
  /** The attempt timeout in ms; `Infinity` for none. */
  readonly timeoutMs: number
  /** Publish the `breakwater:dependency:*` events (a `dependency()`, not a lone policy). */
  readonly dependency: boolean
  /** Also `breakwater:dependency:call` per attempt: false when a retry/hedge above reports the whole call. */
  readonly calls: boolean
  /** Frees a result that arrives after its attempt was answered (timed out, cancelled): a loser's late answer. */
  readonly discard: ((result: unknown) => void) | undefined
}

/** @internal Told when an owned attempt settles (instead of a promise): a retry or hedge running attempts. */
export interface AttemptOwner {
  attemptSucceeded(call: GuardedCall<unknown>, value: unknown): void
  attemptFailed(call: GuardedCall<unknown>, error: unknown): void
}

type AttemptOutcome = DependencyAttemptEvent['outcome'] | 'deadline_exceeded'

const NEW = 0
const QUEUED = 1
const RUNNING = 2
const DONE = 3

/** Attempt timeouts of every call in the process: one timer. */
const attemptTimers = new DeadlineQueue<GuardedCall<unknown>>((call) => call.timedOut())

/** @internal Attempts being timed now: a leak check for tests. */
export function timedAttempts(): number {
  return attemptTimers.size
}

/** The call being constructed by `new Promise(takeSettlers)`: no closure per call for the executor. */
let constructing: GuardedCall<unknown> | undefined
function takeSettlers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  const call = constructing as GuardedCall<unknown>
  call.resolve = resolve
  call.reject = reject
}

/** @internal Run `work` through `stack`. */
export function runGuarded<T>(stack: Stack, work: Work<T>, options: ExecuteOptions | undefined): Promise<T> {
  const call = new GuardedCall<T>(stack, work, options)
  constructing = call as GuardedCall<unknown>
  const promise = new Promise<T>(takeSettlers as (resolve: (value: T) => void, reject: (e: unknown) => void) => void)
  constructing = undefined
  call.start()
  return promise
}

/**
 * @internal One attempt whose outcome goes to `owner`, to be `start()`ed once the owner has noted it (an attempt
 * can settle synchronously); it can be {@link GuardedCall.cancel}led.
 */
export function newAttempt<T>(
  stack: Stack,
  work: Work<T>,
  options: ExecuteOptions | undefined,
  owner: AttemptOwner,
): GuardedCall<T> {
  const call = new GuardedCall<T>(stack, work, options)
  call.owner = owner
  return call
}

export class GuardedCall<T> implements ExecuteContext, Waiter {
  // Bookkeeping of the bulkhead queue and of the timer queues.
  deadlineAt = 0
  heapIndex = -1
  next: Waiter | undefined = undefined
  previous: Waiter | undefined = undefined
  waiting = false
  resolve: (value: T) => void = noop
  reject: (error: unknown) => void = noop
  /** @internal Who hears the outcome instead of a promise. */
  owner: AttemptOwner | undefined = undefined
  /** @internal The owner's clock reading when it launched this attempt. */
  launchedAt = 0

  readonly attempt: number
  readonly #stack: Stack
  readonly #work: Work<T>
  readonly #callerSignal: AbortSignal | undefined
  /** Ms of the caller's budget left when the call started; `Infinity` for none. */
  readonly #callerRemaining: number
  readonly #clock: Clock
  #phase = NEW
  #token = 0
  /** Clock ms when the call was made (read only when its budget is finite or it queues). */
  #createdAt = 0
  #startedAt = 0
  #enqueuedAt = 0
  #inflightAtStart = 0
  /** Whether this call reads the clock for durations. */
  #timed = false
  #attemptEndsAt = Number.POSITIVE_INFINITY
  /** The attempt's time limit is the caller's deadline, not the attempt timeout. */
  #limitIsCallers = false
  #controller: AbortController | undefined = undefined
  #abortReason: unknown = undefined
  #onAbort: (() => void) | undefined = undefined

  constructor(stack: Stack, work: Work<T>, options: ExecuteOptions | undefined) {
    this.#stack = stack
    this.#work = work
    this.#clock = stack.breaker?.clock ?? monotonicNow
    if (options === undefined) {
      this.attempt = 1
      this.#callerSignal = undefined
      this.#callerRemaining = Number.POSITIVE_INFINITY
      return
    }
    this.attempt = options.attempt ?? 1
    const context = options.context
    if (context !== undefined) {
      this.#callerSignal = context.signal
      this.#callerRemaining =
        typeof context.remainingMs === 'function' ? context.remainingMs() : remainingUntil(context.deadline)
    } else {
      this.#callerSignal = options.signal
      this.#callerRemaining = remainingUntil(options.deadline)
    }
  }

  /** Aborted when the attempt must stop: the caller aborted, its deadline passed, or the attempt timed out. */
  get signal(): AbortSignal {
    let controller = this.#controller
    if (controller === undefined) {
      // Created on first read: work that never looks at its signal costs no AbortController.
      controller = new AbortController()
      this.#controller = controller
      if (this.#abortReason !== undefined) controller.abort(this.#abortReason)
    }
    return controller.signal
  }

  /** The attempt's deadline as a Unix epoch in ms, `Infinity` for none. */
  get deadline(): number {
    const endsAt = this.#attemptEndsAt
    if (endsAt === Number.POSITIVE_INFINITY) return endsAt
    return Date.now() + (endsAt - this.#clock())
  }

  start(): void {
    const signal = this.#callerSignal
    if (signal?.aborted) {
      this.#refuse(signal.reason, 'aborted')
      return
    }
    const stack = this.#stack
    const remaining = this.#callerRemaining
    if (remaining !== Number.POSITIVE_INFINITY) {
      if (!(remaining > 0)) {
        this.#refuse(
          new DeadlineExceededError(`No budget was left for the call to "${stack.name}".`, 0, 0),
          'deadline_exceeded',
        )
        return
      }
      this.#createdAt = this.#clock()
    }
    const breaker = stack.breaker
    if (breaker !== undefined) {
      const token = breaker.acquire()
      if (token === REJECTED) {
        this.#refuse(breaker.rejection(), 'circuit_open')
        return
      }
      this.#token = token
    }
    const bulkhead = stack.bulkhead
    if (bulkhead !== undefined && !bulkhead.limiter.tryAcquire()) {
      const limiter = bulkhead.limiter
      const now = this.#clock()
      let waitMs = bulkhead.queueTimeoutMs
      if (remaining !== Number.POSITIVE_INFINITY) waitMs = Math.min(waitMs, remaining - (now - this.#createdAt))
      if (limiter.queueSize === 0 || !limiter.enqueue(this, monotonicNow() + waitMs)) {
        this.#bulkheadRejected('full', 0)
        return
      }
      this.#phase = QUEUED
      this.#enqueuedAt = now
      this.#listen()
      return
    }
    if (bulkhead !== undefined && channels.bulkheadDecision.hasSubscribers) bulkhead.publishDecision('admitted', 0)
    this.#begin()
  }

  /** @internal The bulkhead handed this queued call a permit. */
  admitted(): void {
    const bulkhead = this.#stack.bulkhead as Bulkhead
    if (channels.bulkheadDecision.hasSubscribers) {
      bulkhead.publishDecision('admitted', this.#clock() - this.#enqueuedAt)
    }
    this.#begin()
  }

  /** @internal The queue wait ran out: the bulkhead's wait timeout, or the caller's deadline if that came first. */
  waitExpired(): void {
    if (this.#phase !== QUEUED) return
    this.#phase = DONE
    const waited = this.#clock() - this.#enqueuedAt
    const remaining = this.#callerRemaining - (this.#clock() - this.#createdAt)
    if (remaining <= 1) {
      if (channels.bulkheadDecision.hasSubscribers) {
        this.#stack.bulkhead?.publishDecision('rejected', waited, 'queue_timeout')
      }
      this.#breakerIgnores()
      this.#refuse(
        new DeadlineExceededError(`The caller's deadline passed while "${this.#stack.name}" was queued.`, 0, 0),
        'deadline_exceeded',
      )
      return
    }
    this.#bulkheadRejected('queue_timeout', waited)
  }

  /** @internal The attempt's time limit passed. */
  timedOut(): void {
    if (this.#phase !== RUNNING) return
    const stack = this.#stack
    const callers = this.#limitIsCallers
    const reason = callers
      ? new DeadlineExceededError(`The caller's deadline passed during the call to "${stack.name}".`, 0, 0)
      : new AttemptTimeoutError(stack.name, stack.timeoutMs)
    this.#abort(reason)
    this.#settle(callers ? IGNORED : FAILURE, callers ? 'deadline_exceeded' : 'timed_out')
    this.#fail(reason)
  }

  #begin(): void {
    this.#phase = RUNNING
    const stack = this.#stack
    const bulkhead = stack.bulkhead
    let limitMs = stack.timeoutMs
    const remaining = this.#callerRemaining
    this.#timed =
      limitMs !== Number.POSITIVE_INFINITY ||
      remaining !== Number.POSITIVE_INFINITY ||
      stack.breaker?.needsDuration === true ||
      bulkhead?.limiter.adaptive === true ||
      channels.circuitBreakerCall.hasSubscribers ||
      channels.dependencyAttempt.hasSubscribers ||
      channels.dependencyCall.hasSubscribers
    if (this.#timed) {
      const now = this.#clock()
      this.#startedAt = now
      if (remaining !== Number.POSITIVE_INFINITY) {
        const left = remaining - (now - this.#createdAt)
        if (left < limitMs) {
          limitMs = left
          this.#limitIsCallers = true
        }
      }
      if (limitMs !== Number.POSITIVE_INFINITY) {
        this.#attemptEndsAt = now + limitMs
        attemptTimers.add(this as GuardedCall<unknown>, monotonicNow() + limitMs)
      }
    }
    if (bulkhead !== undefined) this.#inflightAtStart = bulkhead.limiter.inflight
    this.#listen()
    let result: T | PromiseLike<T>
    try {
      result = this.#work(this)
    } catch (error) {
      this.#failed(error)
      return
    }
    if (typeof (result as PromiseLike<T> | null)?.then === 'function') {
      ;(result as PromiseLike<T>).then(
        (value) => this.#succeeded(value),
        (error: unknown) => this.#failed(error),
      )
    } else this.#succeeded(result as T)
  }

  #succeeded(value: T): void {
    if (this.#phase !== RUNNING) {
      // Already answered (timed out, abandoned, a hedge that lost): free what nobody will read.
      this.#stack.discard?.(value)
      return
    }
    const breaker = this.#stack.breaker
    const outcome = breaker === undefined ? SUCCESS : breaker.classifyResult(value)
    this.#settle(outcome, outcome === FAILURE ? 'failure' : 'success')
    this.#ok(value)
  }

  #failed(error: unknown): void {
    if (this.#phase !== RUNNING) return
    let outcome: CallOutcome
    let label: AttemptOutcome
    if (this.#callerSignal?.aborted || isRequestAbortedError(error)) {
      // The caller's own abort (client gone, its deadline): not the dependency's fault.
      outcome = IGNORED
      label = 'aborted'
    } else if (isDeadlineExceededError(error)) {
      outcome = IGNORED
      label = 'deadline_exceeded'
    } else if (isBulkheadFullError(error)) {
      // An inner bulkhead refused: the dependency was never called (opossum counts this; we do not).
      outcome = IGNORED
      label = 'bulkhead_full'
    } else if (isAttemptTimeoutError(error)) {
      outcome = FAILURE
      label = 'timed_out'
    } else {
      const breaker = this.#stack.breaker
      outcome = breaker === undefined ? FAILURE : breaker.classifyError(error)
      label = outcome === FAILURE ? 'failure' : 'success'
    }
    this.#settle(outcome, label)
    this.#fail(error)
  }

  #callerAborted(): void {
    const reason = (this.#callerSignal as AbortSignal).reason
    if (this.#phase === QUEUED) {
      // Leaves the queue at once, and frees nothing: it held no permit.
      const bulkhead = this.#stack.bulkhead as Bulkhead
      bulkhead.limiter.leave(this)
      if (channels.bulkheadDecision.hasSubscribers) {
        bulkhead.publishDecision('aborted', this.#clock() - this.#enqueuedAt)
      }
      this.#breakerIgnores()
      this.#refuse(reason, 'aborted')
      return
    }
    if (this.#phase !== RUNNING) return
    this.#abort(reason)
    this.#settle(IGNORED, 'aborted')
    this.#fail(reason)
  }

  #ok(value: T): void {
    if (this.owner === undefined) this.resolve(value)
    else this.owner.attemptSucceeded(this as GuardedCall<unknown>, value)
  }

  #fail(error: unknown): void {
    if (this.owner === undefined) this.reject(error)
    else this.owner.attemptFailed(this as GuardedCall<unknown>, error)
  }

  /**
   * @internal Abandon this attempt (a hedge lost): out of the queue or aborted with `reason`, not counted by the
   * breaker, its permit returned; the owner hears nothing more.
   */
  cancel(reason: unknown): void {
    const phase = this.#phase
    this.owner = undefined
    if (phase === QUEUED) {
      const bulkhead = this.#stack.bulkhead as Bulkhead
      bulkhead.limiter.leave(this)
      if (channels.bulkheadDecision.hasSubscribers) {
        bulkhead.publishDecision('aborted', this.#clock() - this.#enqueuedAt)
      }
      this.#breakerIgnores()
      this.#refuse(reason, 'aborted')
    } else if (phase === RUNNING) {
      this.#abort(reason)
      this.#settle(IGNORED, 'aborted')
    }
  }

  #abort(reason: unknown): void {
    this.#abortReason = reason
    this.#controller?.abort(reason)
  }

  #listen(): void {
    const signal = this.#callerSignal
    if (signal === undefined || this.#onAbort !== undefined) return
    const onAbort = (): void => this.#callerAborted()
    this.#onAbort = onAbort
    signal.addEventListener('abort', onAbort, { once: true })
  }

  #unlisten(): void {
    if (this.#onAbort === undefined) return
    ;(this.#callerSignal as AbortSignal).removeEventListener('abort', this.#onAbort)
    this.#onAbort = undefined
  }

  /** The call ran and is over: timers and listeners go, the breaker counts it, the bulkhead permit returns. */
  #settle(outcome: CallOutcome, label: AttemptOutcome): void {
    this.#phase = DONE
    if (this.heapIndex >= 0) attemptTimers.remove(this as GuardedCall<unknown>)
    this.#unlisten()
    const stack = this.#stack
    const durationMs = this.#timed ? this.#clock() - this.#startedAt : 0
    stack.breaker?.record(this.#token, outcome, durationMs)
    const bulkhead = stack.bulkhead
    if (bulkhead !== undefined) {
      const signal = label === 'timed_out' ? 'dropped' : outcome === IGNORED ? 'ignored' : 'success'
      if (bulkhead.limiter.release(signal, this.#startedAt, this.#inflightAtStart)) bulkhead.publishLimit()
    }
    if (stack.dependency) this.#publish(label, durationMs, 1)
  }

  /** Refused before reaching the dependency: no attempt was made. */
  #refuse(error: unknown, label: AttemptOutcome): void {
    this.#phase = DONE
    this.#unlisten()
    if (this.#stack.dependency) this.#publish(label, 0, 0)
    this.#fail(error)
  }

  #bulkheadRejected(reason: 'full' | 'queue_timeout', waitedMs: number): void {
    const bulkhead = this.#stack.bulkhead as Bulkhead
    bulkhead.limiter.leave(this)
    if (channels.bulkheadDecision.hasSubscribers) bulkhead.publishDecision('rejected', waitedMs, reason)
    this.#breakerIgnores()
    this.#refuse(bulkhead.rejection(reason), 'bulkhead_full')
  }

  /** A call the breaker admitted but that never ran: its token (a half-open probe slot, maybe) goes back. */
  #breakerIgnores(): void {
    this.#stack.breaker?.record(this.#token, IGNORED, 0)
  }

  #publish(label: AttemptOutcome, durationMs: number, attempts: number): void {
    const name = this.#stack.name
    const durationSeconds = durationMs / 1000
    // A refused call made no attempt; one cut by the caller's deadline was, for the attempt, an abort.
    if (channels.dependencyAttempt.hasSubscribers && (attempts > 0 || label !== 'deadline_exceeded')) {
      publish(channels.dependencyAttempt, {
        policy: name,
        attempt: this.attempt,
        retry: this.attempt > 1,
        outcome: label === 'deadline_exceeded' ? 'aborted' : label,
        durationSeconds,
      } satisfies DependencyAttemptEvent)
    }
    if (this.#stack.calls && channels.dependencyCall.hasSubscribers) {
      publish(channels.dependencyCall, {
        policy: name,
        outcome: label,
        attempts,
        durationSeconds,
      } satisfies DependencyCallEvent)
    }
  }
}

function noop(): void {}

function remainingUntil(deadline: number | undefined): number {
  if (deadline === undefined || deadline === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY
  return deadline - Date.now()
}
