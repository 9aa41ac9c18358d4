// Local quota leases in front of a shared store: a hot key's process charges a slice of the key's quota in one
// round trip and then decides that key's requests in-process until the slice is spent or its lease ends, when
// the unused units go back through the store's atomic refund. No request is admitted that the shared store has
// not charged; the price is early denial while a slice sits unused in another process (bounded, see below).

import { isPromiseLike, type MaybePromise } from '../decision.js'
import { InvalidOptionError } from '../errors.js'
import { monotonicNow } from '../internal/clock.js'
import { duration, knownOptions, optionKeys, positiveInteger } from '../internal/validate.js'
import type { RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from './types.js'

/** Options of {@link LeasingRateLimitStore}. */
export interface LeasingRateLimitStoreOptions {
  /** The shared store (e.g. a `RedisRateLimitStore`). It must implement `refund`, which hands unused units back. */
  store: RateLimitStore
  /** Most units one lease takes. Default `64`. */
  maxSlice?: number
  /**
   * Most share of the tightest rule's limit (its burst, for GCRA) one lease takes, so small limits are not
   * hoarded: with `0.01`, a 500-per-minute rule leases at most 5 units at a time. Default `0.01`.
   */
  maxShare?: number
  /** How long a lease lives before its unused units go back: ms or `"1s"`-style. Default `1000`. */
  leaseMs?: number | string
  /** Most keys holding a lease at once; beyond it, keys are decided exactly, one round trip each. Default `10_000`. */
  maxKeys?: number
}

/** One key's lease and demand. */
interface Lease {
  rules: readonly ResolvedRule[]
  /** Units charged in the shared store and not yet spent here. */
  balance: number
  /** Monotonic ms when the lease's charge was sent (so the charge is at least this old). */
  sentAt: number
  /** Monotonic ms after which the lease must not be spent (its end, or its window's, whichever first). */
  until: number
  /** The shared store's answer to the lease: remaining and reset per rule after the slice was charged. */
  charged: RateLimitResult | undefined
  /** Requests seen in this lease period, and in the previous one: the next slice is sized by demand. */
  hits: number
  lastHits: number
  periodEnd: number
  /** A lease request in flight; requests of this key arriving meanwhile wait for it. */
  pending: Promise<unknown> | undefined
  /** Set when a slice was refused (the key is near its limit): decided exactly until then. */
  exactUntil: number
}

/** Every option of {@link LeasingRateLimitStore}; any other key is an error naming it. */
const OPTIONS = optionKeys<LeasingRateLimitStoreOptions>()(['store', 'maxSlice', 'maxShare', 'leaseMs', 'maxKeys'])

/**
 * A {@link RateLimitStore} that leases quota for hot keys from a shared store. A key that saw at least two
 * requests in the last lease period takes a slice sized by that demand (at most `maxSlice` units and `maxShare`
 * of its tightest rule) in one call to the shared store, and then decides in-process — synchronously, with no
 * round trip — until the slice is spent or the lease ends; the units it did not spend go back with the store's
 * atomic `refund`. Cold keys, keys near their limit and denials go to the shared store exactly as without
 * leases.
 *
 * Guarantees: **never over-admits** — every admitted request was charged in the shared store before it was
 * admitted, and a lease ends before the window it was charged in (fixed and sliding windows), so no request is
 * counted in a window it did not arrive in. **Bounded early denial**: while other processes hold unused units of
 * a key, a request can be denied that an exact limiter would admit — at most `(processes − 1) × slice` units of
 * that key (≤ `(processes − 1) × maxShare` of its limit), each for at most `leaseMs`.
 *
 * @example
 * import { createRateLimiter, LeasingRateLimitStore } from '@breakwater/core'
 * import { RedisRateLimitStore } from '@breakwater/redis'
 * import { Redis } from 'ioredis'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1 })
 * const store = new LeasingRateLimitStore({ store: new RedisRateLimitStore({ client }), leaseMs: '1s' })
 * export const limiter = createRateLimiter({ limit: 10_000, windowMs: '1m', store })
 */
export class LeasingRateLimitStore implements RateLimitStore {
  readonly local = false
  readonly #store: RateLimitStore
  readonly #refund: NonNullable<RateLimitStore['refund']>
  readonly #maxSlice: number
  readonly #maxShare: number
  readonly #leaseMs: number
  readonly #maxKeys: number
  readonly #leases = new Map<string, Lease>()
  #sweeper: ReturnType<typeof setInterval> | undefined

  constructor(options: LeasingRateLimitStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
    knownOptions('LeasingRateLimitStore', options, OPTIONS)
    const store = options.store
    if (typeof store !== 'object' || store === null || typeof store.refund !== 'function') {
      throw new InvalidOptionError('store', store, 'a RateLimitStore with refund() (e.g. a RedisRateLimitStore)')
    }
    this.#store = store
    this.#refund = store.refund.bind(store)
    this.#maxSlice = positiveInteger('maxSlice', options.maxSlice ?? 64)
    const share = options.maxShare ?? 0.01
    if (typeof share !== 'number' || !(share > 0 && share <= 1)) {
      throw new InvalidOptionError('maxShare', share, 'a number in (0, 1]')
    }
    this.#maxShare = share
    this.#leaseMs = duration('leaseMs', options.leaseMs ?? 1000)
    this.#maxKeys = positiveInteger('maxKeys', options.maxKeys ?? 10_000)
  }

  /** Keys holding a lease or being watched for demand. */
  get size(): number {
    return this.#leases.size
  }

  consume(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult> {
    const now = monotonicNow()
    let lease = this.#leases.get(key)
    if (lease === undefined) {
      if (this.#leases.size >= this.#maxKeys) return this.#store.consume(key, rules, cost)
      lease = {
        rules,
        balance: 0,
        sentAt: 0,
        until: 0,
        charged: undefined,
        hits: 0,
        lastHits: 0,
        periodEnd: now + this.#leaseMs,
        pending: undefined,
        exactUntil: 0,
      }
      this.#leases.set(key, lease)
      this.#sweep()
    }
    if (now >= lease.periodEnd) {
      lease.lastHits = now - lease.periodEnd < this.#leaseMs ? lease.hits : 0
      lease.hits = 0
      lease.periodEnd = now + this.#leaseMs
    }
    lease.hits++
    if (lease.rules !== rules) this.#end(key, lease, now)
    lease.rules = rules
    if (lease.balance >= cost && now < lease.until && cost > 0) return this.#spend(lease, cost, now)
    if (lease.pending !== undefined) return lease.pending.then(() => this.consume(key, rules, cost))
    if (lease.balance > 0) this.#end(key, lease, now)
    const slice = now < lease.exactUntil ? 0 : this.#sliceOf(rules, lease.lastHits, lease.hits)
    if (slice < 2 || cost === 0 || cost >= slice) return this.#store.consume(key, rules, cost)
    return this.#lease(key, lease, rules, cost, slice, now)
  }

  peek(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult> {
    return this.#store.peek(key, rules, cost)
  }

  /** A charge of a live lease goes back to it; any other charge to the shared store. */
  refund(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): MaybePromise<void> {
    const lease = this.#leases.get(key)
    const now = monotonicNow()
    if (lease !== undefined && lease.rules === rules && now < lease.until && now - chargedMsAgo >= lease.sentAt) {
      lease.balance += cost
      return
    }
    return this.#refund(key, rules, cost, chargedMsAgo)
  }

  reset(key: string, rules: readonly ResolvedRule[]): MaybePromise<void> {
    const lease = this.#leases.get(key)
    if (lease !== undefined) {
      lease.balance = 0
      lease.until = 0
    }
    return this.#store.reset(key, rules)
  }

  /** Hand every unused unit back, then stop. The shared store is left open (it is the caller's). */
  async shutdown(): Promise<void> {
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper)
    this.#sweeper = undefined
    const now = monotonicNow()
    const returns: Array<MaybePromise<void>> = []
    for (const [key, lease] of this.#leases) returns.push(this.#end(key, lease, now))
    this.#leases.clear()
    await Promise.allSettled(returns)
  }

  /** Units to lease: last period's demand, capped by `maxSlice` and `maxShare` of the tightest rule. */
  #sliceOf(rules: readonly ResolvedRule[], lastHits: number, hits: number): number {
    let cap = this.#maxSlice
    for (const rule of rules) {
      const room = Math.floor(
        (rule.algorithm === 'gcra' ? Math.min(rule.burst, rule.limit) : rule.limit) * this.#maxShare,
      )
      if (room < cap) cap = room
    }
    return Math.min(cap, Math.max(lastHits, hits))
  }

  #lease(
    key: string,
    lease: Lease,
    rules: readonly ResolvedRule[],
    cost: number,
    slice: number,
    now: number,
  ): Promise<RateLimitResult> {
    const sentAt = now
    const asked = this.#store.consume(key, rules, slice)
    const pending = Promise.resolve(asked).then(
      (result) => {
        lease.pending = undefined
        if (!result.allowed) {
          // Not a whole slice left: decide this key exactly for a while, starting with this request.
          lease.exactUntil = monotonicNow() + this.#leaseMs
          return this.#store.consume(key, rules, cost)
        }
        lease.charged = result
        lease.sentAt = sentAt
        lease.until = sentAt + this.#lifetime(rules, result)
        lease.balance = slice
        const at = monotonicNow()
        if (at < lease.until) return this.#spend(lease, cost, at)
        // Its window ended before the answer came: hand the slice back and decide this request exactly.
        this.#end(key, lease, at)
        return this.#store.consume(key, rules, cost)
      },
      (error: unknown) => {
        lease.pending = undefined
        throw error
      },
    )
    lease.pending = pending
    return pending
  }

  /**
   * How long a lease may be spent: `leaseMs`, but never past the end of the window it was charged in (fixed and
   * sliding windows), timed from when the charge was sent — which is no later than when the store counted it.
   */
  #lifetime(rules: readonly ResolvedRule[], result: RateLimitResult): number {
    let lifetime = this.#leaseMs
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i] as ResolvedRule
      const resetMs = result.rules[i]?.resetMs ?? 0
      // Allowed results: fixed windows report the time to the window's end, sliding ones to the end of the next.
      const windowLeft =
        rule.algorithm === 'fixed-window'
          ? resetMs
          : rule.algorithm === 'sliding-window'
            ? resetMs - rule.windowMs
            : lifetime
      if (windowLeft < lifetime) lifetime = windowLeft
    }
    return Math.max(0, lifetime)
  }

  /**
   * Decide in-process from a live lease holding at least `cost` units: the shared store's state at lease time
   * plus what is left of the slice.
   */
  #spend(lease: Lease, cost: number, now: number): RateLimitResult {
    lease.balance -= cost
    const charged = lease.charged as RateLimitResult
    const age = now - lease.sentAt
    const rules = new Array<RuleResult>(charged.rules.length)
    for (let i = 0; i < rules.length; i++) {
      const r = charged.rules[i] as RuleResult
      rules[i] = { allowed: true, remaining: r.remaining + lease.balance, resetMs: Math.max(0, r.resetMs - age) }
    }
    return { allowed: true, retryAfterMs: 0, rules }
  }

  /** End `lease`: its unused units go back to the shared store (a lost hand-back only errs on counting). */
  #end(key: string, lease: Lease, now: number): MaybePromise<void> {
    const unused = lease.balance
    lease.balance = 0
    lease.until = 0
    if (unused <= 0) return
    try {
      const returned = this.#refund(key, lease.rules, unused, now - lease.sentAt)
      if (isPromiseLike(returned)) return returned.catch(noop)
    } catch {
      // Counted, as a lost refund is.
    }
  }

  /** One unref'd timer while leases exist: ends expired leases and forgets keys idle for two periods. */
  #sweep(): void {
    if (this.#sweeper !== undefined) return
    this.#sweeper = setInterval(
      () => {
        const now = monotonicNow()
        for (const [key, lease] of this.#leases) {
          if (lease.pending !== undefined) continue
          if (lease.balance > 0 && now >= lease.until) this.#end(key, lease, now)
          if (lease.balance === 0 && now - lease.periodEnd > this.#leaseMs) this.#leases.delete(key)
        }
        if (this.#leases.size === 0 && this.#sweeper !== undefined) {
          clearInterval(this.#sweeper)
          this.#sweeper = undefined
        }
      },
      Math.max(10, this.#leaseMs / 4),
    )
    this.#sweeper.unref()
  }
}

function noop(): void {}
