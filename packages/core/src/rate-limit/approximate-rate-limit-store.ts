// Local decisions with periodic synchronisation (Envoy's local + global pattern), opt-in: a busy key is decided
// in-process from what the shared store had left at its last sync, and the units admitted here reach the shared
// store in one call per key per sync. Faster than exact, at a stated cost: a bounded over-admission.

import { isPromiseLike, type MaybePromise } from '../decision.js'
import { InvalidOptionError } from '../errors.js'
import { monotonicNow } from '../internal/clock.js'
import { duration, knownOptions, optionKeys, positiveInteger } from '../internal/validate.js'
import type { RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from './types.js'

/** Options of {@link ApproximateRateLimitStore}. */
export interface ApproximateRateLimitStoreOptions {
  /** The shared store (e.g. a `RedisRateLimitStore`). Required. */
  store: RateLimitStore
  /** How often the units admitted here are sent to the shared store: ms or `"100ms"`-style. Default `100`. */
  syncMs?: number | string
  /** Most units of one key a process admits without the shared store having counted them. Default `1000`. */
  maxLocal?: number
  /**
   * Most share of the tightest rule's limit (its burst, for GCRA) that `maxLocal` may reach, so small limits
   * stay close to exact: with `0.01`, a 500-per-minute rule admits at most 5 units ahead of the shared store.
   * Default `0.01`.
   */
  maxShare?: number
  /** Most keys decided locally at once; beyond it, keys are decided exactly. Default `10_000`. */
  maxKeys?: number
}

/** What this process knows of one key. */
interface Entry {
  rules: readonly ResolvedRule[]
  /** Units local decisions may still admit: the shared store's remaining (tightest rule) at `seenAt`. */
  known: number
  /** The shared store's last answer for the key (remaining and reset per rule), at `seenAt`. */
  seen: RateLimitResult
  /** Monotonic ms of `known`: older than two syncs, it is too stale to decide on. */
  seenAt: number
  /** Units admitted here and not yet sent to the shared store. */
  pending: number
  /** Units on their way to the shared store (a sync in flight). */
  sending: number
  /** Most units admitted ahead of the shared store (pending + sending), from `maxLocal` and `maxShare`. */
  allowance: number
  /** Monotonic ms of the last request: idle keys are forgotten. */
  usedAt: number
}

/** Every option of {@link ApproximateRateLimitStore}; any other key is an error naming it. */
const OPTIONS = optionKeys<ApproximateRateLimitStoreOptions>()(['store', 'syncMs', 'maxLocal', 'maxShare', 'maxKeys'])

/**
 * A {@link RateLimitStore} that decides busy keys in-process and synchronises their counts with a shared store
 * every `syncMs` (Envoy's local + global rate limiting). A key's first request — and any request the local view
 * cannot admit — is decided by the shared store exactly; its answer says how much of the quota is left. Until
 * the next sync, requests of that key are admitted locally, synchronously, while both hold: the units admitted
 * here and not yet counted by the shared store stay within the key's allowance (`maxLocal`, at most `maxShare`
 * of its tightest rule), and the shared store had at least one allowance left at the last answer. Each sync
 * sends every key's admitted units at once (a `RedisRateLimitStore` makes them one script call); a key whose
 * allowance fills up syncs at once. Denials always come from the shared store.
 *
 * **Over-admission bound**: every process holds at most one allowance `L` of a key's units uncounted, so with
 * `P` processes the shared store lags the truth by at most `P × L` units. Near a key's limit (less than `L` left)
 * decisions are exact, so the excess happens only when a key goes from at least `L` left to exhausted within one
 * sync: a burst against one window admits at most `limit + P × L`. Units admitted in one window and counted in
 * the next are counted there (never lost). `LeasingRateLimitStore` never over-admits; pick this store when a
 * bounded excess is acceptable and keys are too many or too cold for leases.
 *
 * @example
 * import { ApproximateRateLimitStore, createRateLimiter } from '@breakwater/core'
 * import { RedisRateLimitStore } from '@breakwater/redis'
 * import { Redis } from 'ioredis'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1 })
 * const store = new ApproximateRateLimitStore({ store: new RedisRateLimitStore({ client }), syncMs: '100ms' })
 * export const limiter = createRateLimiter({ limit: 100_000, windowMs: '1m', store })
 */
export class ApproximateRateLimitStore implements RateLimitStore {
  readonly local = false
  readonly #store: RateLimitStore
  readonly #syncMs: number
  readonly #maxLocal: number
  readonly #maxShare: number
  readonly #maxKeys: number
  readonly #entries = new Map<string, Entry>()
  #timer: ReturnType<typeof setInterval> | undefined
  /** Syncs in flight, so shutdown can wait for them. */
  readonly #inFlight = new Set<Promise<void>>()

  constructor(options: ApproximateRateLimitStoreOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
    knownOptions('ApproximateRateLimitStore', options, OPTIONS)
    const store = options.store
    if (typeof store !== 'object' || store === null || typeof store.consume !== 'function') {
      throw new InvalidOptionError('store', store, 'a RateLimitStore (e.g. a RedisRateLimitStore)')
    }
    this.#store = store
    this.#syncMs = duration('syncMs', options.syncMs ?? 100)
    if (this.#syncMs <= 0) throw new InvalidOptionError('syncMs', options.syncMs, 'a duration above 0')
    this.#maxLocal = positiveInteger('maxLocal', options.maxLocal ?? 1000)
    const share = options.maxShare ?? 0.01
    if (typeof share !== 'number' || !(share > 0 && share <= 1)) {
      throw new InvalidOptionError('maxShare', share, 'a number in (0, 1]')
    }
    this.#maxShare = share
    this.#maxKeys = positiveInteger('maxKeys', options.maxKeys ?? 10_000)
  }

  /** Keys this process holds a view of. */
  get size(): number {
    return this.#entries.size
  }

  consume(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult> {
    const entry = this.#entries.get(key)
    if (entry !== undefined && entry.rules === rules && cost > 0) {
      const now = monotonicNow()
      entry.usedAt = now
      const ahead = entry.pending + entry.sending + cost
      if (ahead <= entry.allowance && ahead <= entry.known && now - entry.seenAt < 2 * this.#syncMs) {
        entry.pending += cost
        // Half the allowance used: sent now, so the other half admits locally while the sync is on its way.
        if (entry.sending === 0 && 2 * entry.pending >= entry.allowance) this.#sync(key, entry)
        return localResult(entry, now)
      }
      // The allowance is full: send what it holds now, and decide this request exactly.
      if (entry.pending > 0 && entry.sending === 0) this.#sync(key, entry)
    }
    return this.#exact(key, rules, cost)
  }

  peek(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult> {
    return this.#store.peek(key, rules, cost)
  }

  /** A charge not yet sent comes off the pending units; any other goes to the shared store's refund. */
  refund(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): MaybePromise<void> {
    const entry = this.#entries.get(key)
    if (entry !== undefined && entry.rules === rules && entry.pending >= cost) {
      entry.pending -= cost
      return
    }
    return this.#store.refund?.(key, rules, cost, chargedMsAgo)
  }

  reset(key: string, rules: readonly ResolvedRule[]): MaybePromise<void> {
    this.#entries.delete(key)
    return this.#store.reset(key, rules)
  }

  /** Send every pending unit, then stop. The shared store is left open (it is the caller's). */
  async shutdown(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    for (const [key, entry] of this.#entries) if (entry.pending > 0) this.#sync(key, entry)
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
    this.#entries.clear()
  }

  /** Decide in the shared store, and keep its answer as this key's local view. */
  #exact(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult> {
    const decided = this.#store.consume(key, rules, cost)
    if (!isPromiseLike(decided)) {
      this.#learn(key, rules, decided)
      return decided
    }
    return decided.then((result) => {
      this.#learn(key, rules, result)
      return result
    })
  }

  /** Remember what the shared store answered for `key`, for local decisions until the next answer. */
  #learn(key: string, rules: readonly ResolvedRule[], result: RateLimitResult): void {
    let entry = this.#entries.get(key)
    const now = monotonicNow()
    if (entry === undefined) {
      const allowance = this.#allowanceOf(rules)
      if (allowance < 1 || this.#entries.size >= this.#maxKeys) return
      entry = { rules, known: 0, seen: result, seenAt: now, pending: 0, sending: 0, allowance, usedAt: now }
      this.#entries.set(key, entry)
      this.#schedule()
    } else if (entry.rules !== rules) {
      // Another rules array for this key (dynamic limits): decided exactly; its pending units still go out.
      return
    }
    entry.seen = result
    entry.seenAt = now
    entry.usedAt = now
    // Near the limit (less than one allowance left) every decision is exact: that is what bounds the excess.
    const left = tightest(result)
    entry.known = left >= entry.allowance ? left : 0
  }

  /** Send `entry`'s pending units to the shared store; its answer refreshes the local view. */
  #sync(key: string, entry: Entry): void {
    const units = entry.pending
    entry.pending = 0
    entry.sending = units
    const done = this.#charge(key, entry.rules, units).then(
      (result) => {
        entry.sending = 0
        if (result !== undefined) this.#learn(key, entry.rules, result)
        else entry.known = 0
      },
      () => {
        // Not counted: sent again at the next sync (the view goes stale meanwhile, so decisions turn exact).
        entry.sending = 0
        entry.pending += units
      },
    )
    this.#inFlight.add(done)
    void done.finally(() => this.#inFlight.delete(done))
  }

  /**
   * Charge `units` admitted here. All of them when they fit; otherwise what still fits (the rest is the
   * over-admission), and the answer is `undefined`: the key is exhausted.
   */
  async #charge(key: string, rules: readonly ResolvedRule[], units: number): Promise<RateLimitResult | undefined> {
    const result = await this.#store.consume(key, rules, units)
    if (result.allowed) return result
    const fits = tightest(result)
    if (fits > 0) await this.#store.consume(key, rules, fits)
    return undefined
  }

  /** Most units of a key admitted ahead of the shared store: `maxLocal`, at most `maxShare` of the tightest rule. */
  #allowanceOf(rules: readonly ResolvedRule[]): number {
    let cap = this.#maxLocal
    for (const rule of rules) {
      const room = Math.floor(
        (rule.algorithm === 'gcra' ? Math.min(rule.burst, rule.limit) : rule.limit) * this.#maxShare,
      )
      if (room < cap) cap = room
    }
    return cap
  }

  /** One unref'd timer while keys are held: sends pending units and forgets keys idle for two syncs. */
  #schedule(): void {
    if (this.#timer !== undefined) return
    this.#timer = setInterval(() => {
      const now = monotonicNow()
      for (const [key, entry] of this.#entries) {
        if (entry.pending > 0 && entry.sending === 0) this.#sync(key, entry)
        else if (entry.pending === 0 && entry.sending === 0 && now - entry.usedAt > 2 * this.#syncMs) {
          this.#entries.delete(key)
        }
      }
      if (this.#entries.size === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer)
        this.#timer = undefined
      }
    }, this.#syncMs)
    this.#timer.unref()
  }
}

/** Units left under the tightest rule of a shared-store answer. */
function tightest(result: RateLimitResult): number {
  let left = Number.POSITIVE_INFINITY
  for (const rule of result.rules) if (rule.remaining < left) left = rule.remaining
  return left === Number.POSITIVE_INFINITY ? 0 : left
}

/** A local admission: the shared store's last answer, less what was admitted here since, aged. */
function localResult(entry: Entry, now: number): RateLimitResult {
  const seen = entry.seen.rules
  const age = now - entry.seenAt
  const ahead = entry.pending + entry.sending
  const rules = new Array<RuleResult>(seen.length)
  for (let i = 0; i < seen.length; i++) {
    const r = seen[i] as RuleResult
    rules[i] = { allowed: true, remaining: Math.max(0, r.remaining - ahead), resetMs: Math.max(0, r.resetMs - age) }
  }
  return { allowed: true, retryAfterMs: 0, rules }
}
