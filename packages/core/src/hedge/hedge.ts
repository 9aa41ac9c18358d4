// The hedge policy: when the first attempt has not answered after a delay (fixed, or a percentile of recent
// latencies), send one more and take the first acceptable answer — the tail of a healthy dependency, cut.

import type { Stack } from '../dependency/guarded-call.js'
import { type Engine, type HedgePlan, runResilient } from '../dependency/resilient-call.js'
import { InvalidOptionError } from '../errors.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { monotonicNow } from '../internal/clock.js'
import {
  type Duration,
  duration,
  knownOptions,
  optionalFunction,
  optionKeys,
  policyName,
  positiveInteger,
} from '../internal/validate.js'
import type { RetryBudget, RetryBudgetOptions } from '../retry/budget.js'
import { discardResult, type Outcome } from '../retry/classify.js'
import { resolveBudget } from '../retry/retry.js'
import { LatencyQuantile } from './latency-quantile.js'

/** The hedge delay from recent latencies: a percentile of this dependency's successful attempts. */
export interface HedgePercentile {
  /** The percentile, in `(0, 1)`. Default `0.95`. */
  percentile?: number
  /** No hedge before this many successful attempts were measured. Default `20`. */
  minSamples?: number
}

/** Options of {@link createHedge} (and the `hedge` of `dependency()`). */
export interface HedgeOptions {
  /** When to hedge: a fixed delay, or a percentile of recent latencies. Default `{ percentile: 0.95, minSamples: 20 }`. */
  delayMs?: Duration | HedgePercentile
  /** Hedges per call at most (1 to 4). Default `1`. */
  maxHedges?: number
  /** What is not an acceptable answer (a 503, a reset): launches the next attempt at once. Default {@link isRetryableOutcome}. */
  retryOn?: (outcome: Outcome) => boolean
  /** Frees a losing result. Default {@link discardResult}. */
  discard?: (result: unknown) => void
  /**
   * The budget hedges spend (in `dependency()`, the retry's). Options, a shared {@link RetryBudget}, or `false`.
   * Default `{ ratio: 0.2, perSecond: 10, windowMs: 10_000 }`.
   */
  budget?: RetryBudgetOptions | RetryBudget | false
}

const KEYS = optionKeys<HedgeOptions & { name?: string }>()([
  'name',
  'delayMs',
  'maxHedges',
  'retryOn',
  'discard',
  'budget',
])
const PERCENTILE_KEYS = optionKeys<HedgePercentile>()(['percentile', 'minSamples'])

/** @internal Resolved hedge options. */
export interface ResolvedHedge {
  readonly plan: HedgePlan
  readonly retryOn: ((outcome: Outcome) => boolean) | undefined
  readonly discard: ((result: unknown) => void) | undefined
  readonly budget: RetryBudgetOptions | RetryBudget | false | undefined
}

/** @internal */
export function resolveHedge(prefix: string, options: HedgeOptions): ResolvedHedge {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(prefix.slice(0, -1) || 'options', options, 'hedge options or false')
  }
  knownOptions('hedge', options, KEYS)
  const maxHedges = positiveInteger(`${prefix}maxHedges`, options.maxHedges ?? 1)
  if (maxHedges > 4) throw new InvalidOptionError(`${prefix}maxHedges`, maxHedges, 'at most 4')
  const delay = options.delayMs ?? {}
  let plan: HedgePlan
  if (typeof delay === 'object' && delay !== null) {
    knownOptions('hedge.delayMs', delay, PERCENTILE_KEYS)
    const percentile = delay.percentile ?? 0.95
    if (typeof percentile !== 'number' || !(percentile > 0 && percentile < 1)) {
      throw new InvalidOptionError(`${prefix}delayMs.percentile`, percentile, 'a number in (0, 1)')
    }
    plan = {
      delayMs: Number.NaN,
      latency: new LatencyQuantile(percentile),
      minSamples: positiveInteger(`${prefix}delayMs.minSamples`, delay.minSamples ?? 20),
      maxHedges,
    }
  } else {
    plan = { delayMs: duration(`${prefix}delayMs`, delay), latency: undefined, minSamples: 0, maxHedges }
  }
  return {
    plan,
    retryOn: optionalFunction(`${prefix}retryOn`, options.retryOn),
    discard: optionalFunction(`${prefix}discard`, options.discard),
    budget: options.budget,
  }
}

/**
 * Create a hedge policy, for idempotent work only (`ExecuteOptions.idempotent`, default `true`): if the first
 * attempt has not answered after the delay, start another (up to `maxHedges`), take the first acceptable answer
 * and abort the others through their own signals (their late results go to `discard`). A first attempt that
 * fails retryably starts the next at once. Hedges spend the budget; without one, none is sent. Usually a layer of
 * `dependency()`, where hedges also count in the bulkhead and are not sent while the breaker is not closed.
 *
 * @example
 * import { createHedge } from '@breakwater/core'
 *
 * const hedge = createHedge({ name: 'search', delayMs: 50 })
 * export const search = (q: string) =>
 *   hedge.execute(({ signal }) => fetch(`http://127.0.0.1:4000/search?q=${q}`, { signal }))
 */
export function createHedge(options: HedgeOptions & { name: string }): Hedge {
  return new Hedge(options)
}

/** A hedge policy. Create one with {@link createHedge}. */
export class Hedge implements Policy {
  readonly name: string
  readonly #engine: Engine

  constructor(options: HedgeOptions & { name: string }) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
    const name = policyName('name', options.name)
    const resolved = resolveHedge('', options)
    this.name = name
    const discard = resolved.discard ?? discardResult
    const stack: Stack = {
      name,
      breaker: undefined,
      bulkhead: undefined,
      timeoutMs: Number.POSITIVE_INFINITY,
      dependency: false,
      calls: false,
      discard,
    }
    this.#engine = {
      name,
      attempts: stack,
      single: stack,
      retry: undefined,
      hedge: resolved.plan,
      retryOn: resolved.retryOn,
      discard,
      budget: resolveBudget('budget', resolved.budget),
      publishCalls: false,
      clock: monotonicNow,
    }
  }

  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return runResilient(this.#engine, work, options)
  }
}
