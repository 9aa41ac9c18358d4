// The default in-process store: bounded by an (approximate) LRU cap, expired lazily on access (no per-key timers),
// timed by a monotonic clock.

import { InvalidOptionError } from '../errors.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { knownOptions, optionKeys, positiveInteger } from '../internal/validate.js'
import { type Evaluation, evaluate, refund } from '../rate-limit/algorithms.js'
import type { RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from '../rate-limit/types.js'

/** Options of {@link MemoryRateLimitStore}. */
export interface MemoryRateLimitStoreOptions {
  /** Most keys kept; the least recently used key is evicted beyond it. Default `100_000`. */
  maxKeys?: number
  /** Millisecond clock; only differences matter. Default: monotonic `performance.now()`. For tests. */
  now?: Clock
}

interface Entry {
  /** Three state slots per rule. */
  state: number[]
  /** Clock value after which every rule is back to empty. */
  expiresAt: number
  /** Used since it was last passed over for eviction (second-chance LRU). */
  used: boolean
}

/** Reused across calls: store calls are synchronous and never re-entered. */
const pending: number[] = []
const scratch: Evaluation = { allowed: false, remaining: 0, resetMs: 0, next0: 0, next1: 0, next2: 0, expiresAt: 0 }

/** Every option of MemoryRateLimitStore; any other key is an error naming it. */
const OPTIONS = optionKeys<MemoryRateLimitStoreOptions>()(['maxKeys', 'now'])

/**
 * In-process rate-limit store. Bounded: at most `maxKeys` keys, least recently used evicted first (second-chance
 * approximation); expired
 * state is dropped lazily when touched or evicted, with no timers. Each process has its own counts — use
 * `@breakwater/redis` when several processes must share limits.
 *
 * @example
 * const store = new MemoryRateLimitStore({ maxKeys: 50_000 })
 * app.use(rateLimit({ limit: 100, windowMs: '1m', store }))
 */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly local = true
  readonly #entries = new Map<string, Entry>()
  readonly #maxKeys: number
  readonly #now: Clock

  constructor(options: MemoryRateLimitStoreOptions = {}) {
    knownOptions('MemoryRateLimitStore', options, OPTIONS)
    this.#maxKeys = positiveInteger('maxKeys', options.maxKeys ?? 100_000)
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new InvalidOptionError('now', options.now, 'a function returning milliseconds')
    }
    this.#now = options.now ?? monotonicNow
  }

  /** Number of keys currently held (expired ones included until touched or evicted). */
  get size(): number {
    return this.#entries.size
  }

  consume(key: string, rules: readonly ResolvedRule[], cost: number): RateLimitResult {
    return this.#decide(key, rules, cost, true)
  }

  peek(key: string, rules: readonly ResolvedRule[], cost: number): RateLimitResult {
    return this.#decide(key, rules, cost, false)
  }

  /**
   * Give back `cost` units of a charge made `chargedMsAgo` ago to every rule of `key`: never below empty, never
   * into a window the charge was not counted in. Expired or unknown state has nothing to give back.
   */
  refund(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): void {
    const entry = this.#entries.get(key)
    const now = this.#now()
    if (entry === undefined || now >= entry.expiresAt || entry.state.length !== rules.length * 3 || cost <= 0) return
    const state = entry.state
    let expiresAt = 0
    for (let i = 0; i < rules.length; i++) {
      const o = i * 3
      const e = refund(
        rules[i] as ResolvedRule,
        state[o] as number,
        state[o + 1] as number,
        state[o + 2] as number,
        now,
        cost,
        chargedMsAgo,
        scratch,
      )
      state[o] = e.next0
      state[o + 1] = e.next1
      state[o + 2] = e.next2
      if (e.expiresAt > expiresAt) expiresAt = e.expiresAt
    }
    entry.expiresAt = expiresAt
  }

  reset(key: string): void {
    this.#entries.delete(key)
  }

  shutdown(): void {
    this.#entries.clear()
  }

  /**
   * Second-chance eviction: walk from the oldest insertion; expired entries go, entries used since the last
   * pass move to the back once, and the first unused one is evicted. Approximates LRU without reordering the
   * map on every hit (a hit only sets a flag).
   */
  #evict(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (this.#entries.size <= this.#maxKeys) return
      this.#entries.delete(key)
      if (entry.used && now < entry.expiresAt) {
        entry.used = false
        this.#entries.set(key, entry)
      }
    }
  }

  #decide(key: string, rules: readonly ResolvedRule[], cost: number, charge: boolean): RateLimitResult {
    const now = this.#now()
    const width = rules.length * 3
    const entry = this.#entries.get(key)
    // Expired state (or state of other rules) reads as a new key's; its entry is reused below, not replaced, so
    // a client returning after its state expired (every request, under a limit far above its rate) costs no
    // map delete and insert.
    const state = entry !== undefined && now < entry.expiresAt && entry.state.length === width ? entry.state : undefined
    const results: RuleResult[] = new Array(rules.length)
    let allowed = true
    let retryAfterMs = 0
    let expiresAt = 0
    // Decide every rule into `pending` first; nothing is written unless every rule allows.
    for (let i = 0; i < rules.length; i++) {
      const o = i * 3
      const e = evaluateSlot(rules[i] as ResolvedRule, state, o, now, cost)
      results[i] = { allowed: e.allowed, remaining: e.remaining, resetMs: e.resetMs }
      pending[o] = e.next0
      pending[o + 1] = e.next1
      pending[o + 2] = e.next2
      if (e.expiresAt > expiresAt) expiresAt = e.expiresAt
      if (!e.allowed) {
        allowed = false
        if (e.resetMs > retryAfterMs) retryAfterMs = e.resetMs
      }
    }
    if (!allowed) {
      // Nothing is charged, so the rules that would have allowed report their state as it stays.
      for (let i = 0; i < rules.length; i++) {
        if (!(results[i] as RuleResult).allowed) continue
        const e = evaluateSlot(rules[i] as ResolvedRule, state, i * 3, now, 0)
        results[i] = { allowed: true, remaining: e.remaining, resetMs: e.resetMs }
      }
    }
    if (charge) {
      if (allowed && cost > 0) {
        const next = entry !== undefined && entry.state.length === width ? entry.state : new Array<number>(width)
        for (let j = 0; j < width; j++) next[j] = pending[j] as number
        if (entry === undefined) {
          this.#entries.set(key, { state: next, expiresAt, used: false })
          if (this.#entries.size > this.#maxKeys) this.#evict(now)
        } else {
          entry.state = next
          entry.expiresAt = expiresAt
          entry.used = true
        }
      } else if (state !== undefined && entry !== undefined) {
        // A client being denied is active: keep it from being evicted (and its limit forgotten).
        entry.used = true
      }
    }
    return { allowed, retryAfterMs: allowed ? 0 : retryAfterMs, rules: results }
  }
}

/** Evaluate one rule from its three slots at `offset` of `state` (a new key when `state` is undefined). */
function evaluateSlot(
  rule: ResolvedRule,
  state: number[] | undefined,
  offset: number,
  now: number,
  cost: number,
): Evaluation {
  return state === undefined
    ? evaluate(rule, 0, 0, 0, now, cost, scratch)
    : evaluate(
        rule,
        state[offset] as number,
        state[offset + 1] as number,
        state[offset + 2] as number,
        now,
        cost,
        scratch,
      )
}
