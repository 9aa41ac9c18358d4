// The retry budget (Finagle's RetryBudget): retries and hedges may add at most `ratio` of the recent first
// attempts, plus a small per-second floor so a quiet client can still retry. A total outage then multiplies the
// load on the dependency by at most `1 + ratio`, instead of by the number of attempts.

import { InvalidOptionError } from '../errors.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { type Duration, duration, knownOptions, nonNegativeNumber, optionKeys } from '../internal/validate.js'

/** Options of a {@link RetryBudget}. */
export interface RetryBudgetOptions {
  /** Retries (and hedges) allowed per first attempt in the window, in `[0, 10]`. Default `0.2` (20 %). */
  ratio?: number
  /** Retries allowed per second whatever the traffic (a token bucket holding one second's worth). Default `10`. */
  perSecond?: number
  /** How long a first attempt counts for the ratio, 1 s to 60 s. Default `10_000` ms. */
  windowMs?: Duration
  /** Monotonic ms clock; inject one in tests. Default `performance.now`. */
  clock?: Clock
}

const KEYS = optionKeys<RetryBudgetOptions>()(['ratio', 'perSecond', 'windowMs', 'clock'])

/** Sub-buckets of the window: memory is fixed, whatever the traffic. */
const BUCKETS = 10

/**
 * A retry budget, shared by every call of a dependency (or of several: pass the same instance). A first attempt
 * is recorded with {@link recordFirst}; a retry or hedge is sent only when {@link tryRetry} allows it — while
 * the retries in the window stay within `ratio` × the first attempts in the window, or else while the floor's
 * token bucket (`perSecond`, refilled continuously, holding at most one second's worth) has a token.
 *
 * Bounds: over any stretch of `T` seconds within one window, retries ≤ `ratio` × first attempts +
 * `perSecond` × (`T` + 1).
 *
 * @example
 * import { dependency, RetryBudget } from '@breakwater/core'
 *
 * // One budget for two dependencies that are the same service behind two names.
 * const budget = new RetryBudget({ ratio: 0.1, perSecond: 5 })
 * export const reads = dependency('catalog-read', { retry: { budget } })
 * export const search = dependency('catalog-search', { retry: { budget } })
 */
export class RetryBudget {
  readonly ratio: number
  readonly perSecond: number
  readonly windowMs: number
  readonly #clock: Clock
  readonly #bucketMs: number
  readonly #epochs = new Float64Array(BUCKETS).fill(-1)
  readonly #firsts = new Float64Array(BUCKETS)
  readonly #retries = new Float64Array(BUCKETS)
  #tokens: number
  #refilledAt: number

  constructor(options: RetryBudgetOptions = {}) {
    knownOptions('retry budget', options, KEYS)
    const ratio = nonNegativeNumber('budget.ratio', options.ratio ?? 0.2)
    if (ratio > 10) throw new InvalidOptionError('budget.ratio', ratio, 'a number in [0, 10]')
    this.ratio = ratio
    this.perSecond = nonNegativeNumber('budget.perSecond', options.perSecond ?? 10)
    const windowMs = duration('budget.windowMs', options.windowMs ?? 10_000)
    if (windowMs < 1000 || windowMs > 60_000) {
      throw new InvalidOptionError('budget.windowMs', options.windowMs, 'a duration from 1s to 60s')
    }
    this.windowMs = windowMs
    this.#bucketMs = windowMs / BUCKETS
    this.#clock = options.clock ?? monotonicNow
    if (typeof this.#clock !== 'function') throw new InvalidOptionError('budget.clock', options.clock, 'a function')
    // Starts full: a client's first failure may be retried before it has any traffic to earn a ratio on.
    this.#tokens = this.perSecond
    this.#refilledAt = this.#clock()
  }

  /** Count a first attempt (every call's, retried or not): it earns `ratio` of a retry for `windowMs`. */
  recordFirst(): void {
    const index = this.#bucket(this.#clock())
    this.#firsts[index] = (this.#firsts[index] as number) + 1
  }

  /** Spend one retry (or hedge) if the budget allows it now; `false` means "do not send it". */
  tryRetry(): boolean {
    const now = this.#clock()
    const index = this.#bucket(now)
    const [firsts, retries] = this.#sums(now)
    // A small epsilon so 5 first attempts at 20 % earn exactly one retry despite binary fractions.
    if (retries + 1 <= this.ratio * firsts + 1e-9) {
      this.#retries[index] = (this.#retries[index] as number) + 1
      return true
    }
    this.#refill(now)
    if (this.#tokens >= 1) {
      this.#tokens--
      return true
    }
    return false
  }

  /** Retries the budget would allow now (ratio share plus floor tokens), rounded down. */
  get available(): number {
    const now = this.#clock()
    const [firsts, retries] = this.#sums(now)
    this.#refill(now)
    return Math.max(0, Math.floor(this.ratio * firsts + 1e-9 - retries)) + Math.floor(this.#tokens)
  }

  /** The bucket of `now`, emptied first if it still holds an older period's counts. */
  #bucket(now: number): number {
    const epoch = Math.floor(now / this.#bucketMs)
    const index = epoch % BUCKETS
    if (this.#epochs[index] !== epoch) {
      this.#epochs[index] = epoch
      this.#firsts[index] = 0
      this.#retries[index] = 0
    }
    return index
  }

  /** First attempts and ratio-charged retries of the buckets still inside the window. */
  #sums(now: number): [number, number] {
    const oldest = Math.floor(now / this.#bucketMs) - BUCKETS + 1
    let firsts = 0
    let retries = 0
    for (let i = 0; i < BUCKETS; i++) {
      if ((this.#epochs[i] as number) >= oldest) {
        firsts += this.#firsts[i] as number
        retries += this.#retries[i] as number
      }
    }
    return [firsts, retries]
  }

  #refill(now: number): void {
    const elapsed = now - this.#refilledAt
    this.#refilledAt = now
    // Both clamps: never more than one second's worth (idle time does not bank a burst), never below zero.
    if (elapsed > 0) this.#tokens = Math.min(this.perSecond, this.#tokens + (elapsed / 1000) * this.perSecond)
  }
}
