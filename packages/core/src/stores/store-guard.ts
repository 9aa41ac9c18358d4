// Every remote store call is bounded in time, and a store that just failed is not waited on by every request:
// while it is down, one probe call at a time goes through and the rest get the failure policy at once.

import { isPromiseLike, type MaybePromise } from '../decision.js'
import { ErrorCode, StoreError } from '../errors.js'
import { monotonicNow } from '../internal/clock.js'

/** How long a failed store is skipped before a single probe call tries it again. */
const PROBE_INTERVAL_MS = 1000

/** Time-bounds calls to one store and tracks whether it is answering. */
export class StoreGuard {
  readonly #timeoutMs: number
  #downUntil = 0
  #probing = false

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  /** True while the store is considered down and no probe is due. */
  get down(): boolean {
    return this.#downUntil !== 0 && (this.#probing || monotonicNow() < this.#downUntil)
  }

  /**
   * Run `call`; synchronous results pass straight through. A promise is raced against the timeout; failures
   * and timeouts reject with a {@link StoreError}. While the store is down, rejects at once without calling.
   */
  run<T>(operation: string, call: () => MaybePromise<T>): MaybePromise<T> {
    if (this.#downUntil !== 0) {
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
    return new Promise<T>((resolve, reject) => {
      // A reply that arrives after the timeout says nothing about health: a store slower than the timeout
      // must stay skipped, or every request would wait the full timeout again.
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        this.#failed()
        reject(
          new StoreError(ErrorCode.StoreTimeout, operation, `store ${operation} timed out after ${this.#timeoutMs} ms`),
        )
      }, this.#timeoutMs)
      timer.unref()
      result.then(
        (value) => {
          if (timedOut) return
          clearTimeout(timer)
          this.#recovered()
          resolve(value)
        },
        (error: unknown) => {
          if (timedOut) return
          clearTimeout(timer)
          this.#failed()
          reject(new StoreError(ErrorCode.StoreUnavailable, operation, `store ${operation} failed`, error))
        },
      )
    })
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
