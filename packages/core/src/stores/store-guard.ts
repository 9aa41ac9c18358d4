// Every remote store call is bounded in time, and a store that just failed is not waited on by every request:
// while it is down, one probe call at a time goes through and the rest get the failure policy at once. "Down"
// is a circuit breaker (open after one failure, probe after a second, one probe at a time) — the same breaker
// the outbound policies use; the time bound is the shared deadline queue.

import { CircuitBreaker, FAILURE, REJECTED, SUCCESS } from '../circuit-breaker/circuit-breaker.js'
import { isPromiseLike, type MaybePromise } from '../decision.js'
import { ErrorCode, StoreError } from '../errors.js'
import { monotonicNow } from '../internal/clock.js'
import { type DeadlineEntry, DeadlineQueue } from '../internal/deadline-queue.js'

/** How long a failed store is skipped before a single probe call tries it again. */
const PROBE_INTERVAL_MS = 1000

/** One call in flight: settled by the store's answer or by its deadline, whichever comes first. */
interface Pending extends DeadlineEntry {
  readonly guard: StoreGuard
  readonly operation: string
  resolve: ((value: never) => void) | undefined
  reject: ((error: unknown) => void) | undefined
}

/** Store calls of every guard in the process, timed by one timer. */
const deadlines = new DeadlineQueue<Pending>((pending) => pending.guard.timedOut(pending))

/** Time-bounds calls to one store and tracks whether it is answering. */
export class StoreGuard {
  readonly #timeoutMs: number
  /** Open = the store is down. Any answer closes it and any failure opens it, whichever call it came from. */
  readonly #breaker = new CircuitBreaker({
    name: 'store',
    consecutiveFailures: 1,
    openMs: PROBE_INTERVAL_MS,
    halfOpenProbes: 1,
  })

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  /** True while the store is considered down and no probe is due. */
  get down(): boolean {
    return !this.#breaker.admits()
  }

  /**
   * Run `call`; synchronous results pass straight through. A promise is raced against the timeout; failures
   * and timeouts reject with a {@link StoreError}. While the store is down, rejects at once without calling —
   * unless `mustTry`: a write whose loss breaks a promise (an executed request's idempotency record) is always
   * attempted, still bounded by the timeout, and its answer still tells whether the store is back.
   */
  run<T>(operation: string, call: () => MaybePromise<T>, mustTry = false): MaybePromise<T> {
    const breaker = this.#breaker
    if (breaker.acquire() === REJECTED && !mustTry) {
      return Promise.reject(new StoreError(ErrorCode.StoreUnavailable, operation, 'store is down (recent failure)'))
    }
    let result: MaybePromise<T>
    try {
      result = call()
    } catch (error) {
      breaker.observe(FAILURE)
      return Promise.reject(new StoreError(ErrorCode.StoreUnavailable, operation, `store ${operation} failed`, error))
    }
    if (!isPromiseLike(result)) {
      breaker.observe(SUCCESS)
      return result
    }
    const pending: Pending = {
      guard: this,
      operation,
      deadlineAt: 0,
      heapIndex: -1,
      resolve: undefined,
      reject: undefined,
    }
    const promise = new Promise<T>((resolve, reject) => {
      pending.resolve = resolve as (value: never) => void
      pending.reject = reject
    })
    deadlines.add(pending, monotonicNow() + this.#timeoutMs)
    result.then(
      (value) => {
        const resolve = pending.resolve
        // A reply that arrives after the timeout says nothing about health: a store slower than the timeout
        // must stay skipped, or every request would wait the full timeout again.
        if (resolve === undefined) return
        pending.resolve = pending.reject = undefined
        deadlines.remove(pending)
        breaker.observe(SUCCESS)
        resolve(value as never)
      },
      (error: unknown) => {
        const reject = pending.reject
        if (reject === undefined) return
        pending.resolve = pending.reject = undefined
        deadlines.remove(pending)
        breaker.observe(FAILURE)
        reject(new StoreError(ErrorCode.StoreUnavailable, operation, `store ${operation} failed`, error))
      },
    )
    return promise
  }

  /** @internal A call's deadline passed before the store answered. */
  timedOut(pending: Pending): void {
    const reject = pending.reject
    if (reject === undefined) return
    pending.resolve = pending.reject = undefined
    this.#breaker.observe(FAILURE)
    reject(
      new StoreError(
        ErrorCode.StoreTimeout,
        pending.operation,
        `store ${pending.operation} timed out after ${this.#timeoutMs} ms`,
      ),
    )
  }
}
