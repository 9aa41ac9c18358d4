// Every remote store call is bounded in time, and a store that just failed is not waited on by every request:
// while it is down, one probe call at a time goes through and the rest get the failure policy at once.

import { isPromiseLike, type MaybePromise } from '../decision.js'
import { ErrorCode, StoreError } from '../errors.js'
import { monotonicNow } from '../internal/clock.js'

/** How long a failed store is skipped before a single probe call tries it again. */
const PROBE_INTERVAL_MS = 1000
/** Settled calls are dropped from the front of the queue in chunks, so it is compacted rarely. */
const COMPACT_AT = 1024

/** One call in flight: settled by the store's answer or by the sweep, whichever comes first. */
interface Pending {
  readonly deadline: number
  readonly operation: string
  resolve: ((value: never) => void) | undefined
  reject: ((error: unknown) => void) | undefined
}

/** Time-bounds calls to one store and tracks whether it is answering. */
export class StoreGuard {
  readonly #timeoutMs: number
  #downUntil = 0
  #probing = false
  /**
   * Calls in flight, in call order — which is deadline order, since they all get the same timeout. One timer
   * for all of them, armed for the oldest deadline, instead of a setTimeout + clearTimeout per call.
   */
  readonly #queue: Pending[] = []
  #head = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  readonly #sweep = (): void => this.#expire()

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  /** True while the store is considered down and no probe is due. */
  get down(): boolean {
    return this.#downUntil !== 0 && (this.#probing || monotonicNow() < this.#downUntil)
  }

  /**
   * Run `call`; synchronous results pass straight through. A promise is raced against the timeout; failures
   * and timeouts reject with a {@link StoreError}. While the store is down, rejects at once without calling —
   * unless `mustTry`: a write whose loss breaks a promise (an executed request's idempotency record) is always
   * attempted, still bounded by the timeout, and its answer still tells whether the store is back.
   */
  run<T>(operation: string, call: () => MaybePromise<T>, mustTry = false): MaybePromise<T> {
    if (this.#downUntil !== 0 && !mustTry) {
      if (this.#probing || monotonicNow() < this.#downUntil) {
        return Promise.reject(new StoreError(ErrorCode.StoreUnavailable, operation, 'store is down (recent failure)'))
      }
      this.#probing = true
    }
    let result: MaybePromise<T>
    try {
      result = call()
    } catch (error) {
      this.#failed()
      return Promise.reject(new StoreError(ErrorCode.StoreUnavailable, operation, `store ${operation} failed`, error))
    }
    if (!isPromiseLike(result)) {
      this.#recovered()
      return result
    }
    const pending: Pending = {
      deadline: monotonicNow() + this.#timeoutMs,
      operation,
      resolve: undefined,
      reject: undefined,
    }
    const promise = new Promise<T>((resolve, reject) => {
      pending.resolve = resolve as (value: never) => void
      pending.reject = reject
    })
    const queue = this.#queue
    // Between sweeps the queue holds every call of the last timeout; trim the settled front early when a long
    // timeout meets a high call rate.
    if (queue.length - this.#head >= COMPACT_AT) this.#trim()
    queue.push(pending)
    if (this.#timer === undefined) this.#arm(this.#timeoutMs)
    result.then(
      (value) => {
        const resolve = pending.resolve
        // A reply that arrives after the timeout says nothing about health: a store slower than the timeout
        // must stay skipped, or every request would wait the full timeout again.
        if (resolve === undefined) return
        pending.resolve = pending.reject = undefined
        this.#recovered()
        resolve(value as never)
      },
      (error: unknown) => {
        const reject = pending.reject
        if (reject === undefined) return
        pending.resolve = pending.reject = undefined
        this.#failed()
        reject(new StoreError(ErrorCode.StoreUnavailable, operation, `store ${operation} failed`, error))
      },
    )
    return promise
  }

  #arm(delayMs: number): void {
    const timer = setTimeout(this.#sweep, delayMs)
    timer.unref()
    this.#timer = timer
  }

  /** Time out every call past its deadline, drop the settled ones, and re-arm for the oldest one left. */
  #expire(): void {
    this.#timer = undefined
    const queue = this.#queue
    const now = monotonicNow()
    let head = this.#head
    while (head < queue.length) {
      const pending = queue[head] as Pending
      if (pending.reject !== undefined) {
        if (pending.deadline > now) break
        const reject = pending.reject
        pending.resolve = pending.reject = undefined
        this.#failed()
        reject(
          new StoreError(
            ErrorCode.StoreTimeout,
            pending.operation,
            `store ${pending.operation} timed out after ${this.#timeoutMs} ms`,
          ),
        )
      }
      head++
    }
    this.#head = head
    this.#compact()
    head = this.#head
    if (head < queue.length) this.#arm(Math.max(0, (queue[head] as Pending).deadline - now))
  }

  /** Drop the settled calls at the front of the queue. */
  #trim(): void {
    const queue = this.#queue
    let head = this.#head
    while (head < queue.length && (queue[head] as Pending).reject === undefined) head++
    this.#head = head
    this.#compact()
  }

  #compact(): void {
    const queue = this.#queue
    const head = this.#head
    if (head === queue.length) {
      queue.length = 0
      this.#head = 0
    } else if (head >= COMPACT_AT) {
      queue.splice(0, head)
      this.#head = 0
    }
  }

  #failed(): void {
    this.#probing = false
    this.#downUntil = monotonicNow() + PROBE_INTERVAL_MS
  }

  #recovered(): void {
    this.#probing = false
    this.#downUntil = 0
  }
}
