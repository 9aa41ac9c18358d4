// The rate-limit store contract: one atomic call per decision, shaped by the algorithms.

import type { MaybePromise } from '../decision.js'

/** `gcra` (default): a token bucket kept as one timestamp. `sliding-window`: weighted previous + current window
 * counters. `fixed-window`: one counter per window that starts at the key's first request. */
export type Algorithm = 'gcra' | 'sliding-window' | 'fixed-window'

/** A rule with every number resolved, as stores receive it. */
export interface ResolvedRule {
  /** Policy name, used in headers and as the key suffix: `[a-z0-9_.-]`, starts with a letter. */
  readonly name: string
  readonly algorithm: Algorithm
  /** Requests (or cost units) allowed per window. */
  readonly limit: number
  readonly windowMs: number
  /** GCRA only: how many units may be spent at once (default `limit`). Ignored by window algorithms. */
  readonly burst: number
}

/** The state of one rule after a decision. */
export interface RuleResult {
  /** False when this rule would be exceeded by the request. */
  readonly allowed: boolean
  /** Units left after this decision. When the decision is denied nothing is charged, so every rule reports
   * its current state: a violated rule the units it has (fewer than the cost), the others theirs. */
  readonly remaining: number
  /** Denied: ms until the request's cost fits. Allowed: ms until the quota is fully available again. */
  readonly resetMs: number
}

/** The outcome of one atomic decision over every rule of a limiter. */
export interface RateLimitResult {
  /** True only if every rule allowed; then every rule was charged. Otherwise none was. */
  readonly allowed: boolean
  /** When denied, ms until the request could succeed (the largest of the violated rules). 0 when allowed. */
  readonly retryAfterMs: number
  /** One result per rule, in the order the rules were given. A denied decision charges no rule, and rules
   * that would have allowed report their uncharged state (`remaining`/`resetMs` as for a cost of 0). */
  readonly rules: readonly RuleResult[]
}

/**
 * Where rate-limit state lives. Implementations decide every rule of one key in a single atomic step:
 * a request denied by one rule charges none of the others.
 *
 * `key` is already namespaced by the limiter (`<limiter name>:<client key>`). Implementations must not
 * store the rules themselves; they are passed on every call.
 */
export interface RateLimitStore {
  /** True for in-process stores: calls never block on I/O, so no timeout or denial cache is needed. */
  readonly local?: boolean
  /** Charge `cost` units against every rule of `key` if all of them allow it. */
  consume(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult>
  /** Report what `consume(key, rules, cost)` would decide, without charging anything. */
  peek(key: string, rules: readonly ResolvedRule[], cost: number): MaybePromise<RateLimitResult>
  /**
   * Give back `cost` units that `consume(key, rules, cost)` charged `chargedMsAgo` ms ago (measured from before
   * that call was sent), to every rule, atomically: a request that turned out not to count (see
   * `skipSuccessfulRequests` / `skipFailedRequests`). Never below an empty state, and never into a window the
   * charge was not counted in (a charge near a window boundary is given back less, never more). Called at most
   * once per charge. Optional: a limiter with refunds refuses a store without it.
   */
  refund?(key: string, rules: readonly ResolvedRule[], cost: number, chargedMsAgo: number): MaybePromise<void>
  /** Forget every rule's state for `key`. */
  reset(key: string, rules: readonly ResolvedRule[]): MaybePromise<void>
  /** Release resources owned by the store (never the user's connections). */
  shutdown?(): MaybePromise<void>
}
