// Where breakers of the same name in several processes meet: the open-until time of a breaker. Counting stays
// local to each process; only "open until" is shared, written when a breaker opens and read at most once per
// interval, so no call waits on the store.

import { isPromiseLike, type MaybePromise } from '../decision.js'
import { type Clock, monotonicNow } from '../internal/clock.js'

/**
 * A store of breaker open-until times, shared by the breakers of one name. `open` records that the breaker is
 * open for `durationMs` from now (keeping a later time already there); `openRemainingMs` answers how long it
 * stays open (0 when closed or unknown). Implementations time with their own clock, so process clocks cannot
 * skew them. `@breakwater/redis` has `RedisBreakerStateStore`.
 */
export interface BreakerStateStore {
  open(name: string, durationMs: number): MaybePromise<void>
  openRemainingMs(name: string): MaybePromise<number>
}

/**
 * Breaker open-until times in this process's memory: breakers of one name in one process (e.g. one per worker
 * module) share their open state. For several processes use a shared store such as Redis.
 *
 * @example
 * import { createCircuitBreaker, MemoryBreakerStateStore } from '@breakwater/core'
 *
 * const store = new MemoryBreakerStateStore()
 * export const a = createCircuitBreaker({ name: 'billing', store })
 * export const b = createCircuitBreaker({ name: 'billing', store }) // opens when `a` opens
 */
export class MemoryBreakerStateStore implements BreakerStateStore {
  readonly #until = new Map<string, number>()
  readonly #now: Clock

  /** `clock`: monotonic ms, inject one in tests. Default `performance.now`. */
  constructor(options: { clock?: Clock } = {}) {
    this.#now = options.clock ?? monotonicNow
  }

  open(name: string, durationMs: number): void {
    const until = this.#now() + durationMs
    if (until > (this.#until.get(name) ?? 0)) this.#until.set(name, until)
  }

  openRemainingMs(name: string): number {
    const until = this.#until.get(name)
    if (until === undefined) return 0
    const remaining = until - this.#now()
    if (remaining > 0) return remaining
    this.#until.delete(name) // expired: bounded by the names in use
    return 0
  }
}

/** @internal Run a store call that may be synchronous; `then` gets its value, `fail` its error. */
export function settleStoreCall<T>(
  call: () => MaybePromise<T>,
  then: (value: T) => void,
  fail: (error: unknown) => void,
): void {
  let result: MaybePromise<T>
  try {
    result = call()
  } catch (error) {
    fail(error)
    return
  }
  if (isPromiseLike(result)) result.then(then, fail)
  else then(result)
}
