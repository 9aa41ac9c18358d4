// The retry policy: more attempts for work that failed in a way worth trying again, spaced by jittered backoff
// or the dependency's Retry-After, within the caller's deadline and a retry budget.

import type { Stack } from '../dependency/guarded-call.js'
import type { Engine, RetryPlan } from '../dependency/resilient-call.js'
import { runResilient } from '../dependency/resilient-call.js'
import { InvalidOptionError } from '../errors.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { monotonicNow } from '../internal/clock.js'
import {
  type Duration,
  duration,
  knownOptions,
  oneOf,
  optionalFunction,
  optionKeys,
  policyName,
  positiveInteger,
} from '../internal/validate.js'
import { BACKOFF_KINDS, type BackoffKind } from './backoff.js'
import { RetryBudget, type RetryBudgetOptions } from './budget.js'
import { discardResult, type Outcome } from './classify.js'

/** Options of {@link createRetry} (and the `retry` of `dependency()`). */
export interface RetryOptions {
  /** Attempts in all, the first included (1 to 10). Default `3`. */
  attempts?: number
  /** The delay formula between attempts. Default `'full-jitter'`: uniform in `[0, min(cap, base·2^n))`. */
  backoff?: BackoffKind
  /** The backoff's base delay. Default `100` ms. */
  baseMs?: Duration
  /** The backoff's largest delay. Default `5_000` ms. */
  capMs?: Duration
  /** The longest `Retry-After` honoured; a longer one is shortened to this. Default `10_000` ms. */
  maxRetryAfterMs?: Duration
  /** Whether an outcome is worth another attempt. Default {@link isRetryableOutcome}. */
  retryOn?: (outcome: Outcome) => boolean
  /** Frees a result that is not returned (a retried 503). Default {@link discardResult}. */
  discard?: (result: unknown) => void
  /**
   * The retry budget: its options (a new budget), an instance (shared), or `false` for none.
   * Default `{ ratio: 0.2, perSecond: 10, windowMs: 10_000 }`.
   */
  budget?: RetryBudgetOptions | RetryBudget | false
  /** Random numbers in `[0, 1)` for the jitter; inject one in tests. Default `Math.random`. */
  random?: () => number
}

const KEYS = optionKeys<RetryOptions & { name?: string }>()([
  'name',
  'attempts',
  'backoff',
  'baseMs',
  'capMs',
  'maxRetryAfterMs',
  'retryOn',
  'discard',
  'budget',
  'random',
])

/** @internal Resolved retry options (`retry.` prefixes option names in errors). */
export interface ResolvedRetry {
  readonly plan: RetryPlan
  readonly retryOn: ((outcome: Outcome) => boolean) | undefined
  readonly discard: ((result: unknown) => void) | undefined
  readonly budget: RetryBudget | undefined
}

/** @internal */
export function resolveRetry(prefix: string, options: RetryOptions): ResolvedRetry {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(prefix.slice(0, -1) || 'options', options, 'retry options or false')
  }
  knownOptions('retry', options, KEYS)
  const attempts = positiveInteger(`${prefix}attempts`, options.attempts ?? 3)
  if (attempts > 10) throw new InvalidOptionError(`${prefix}attempts`, attempts, 'at most 10')
  const baseMs = duration(`${prefix}baseMs`, options.baseMs ?? 100)
  const capMs = duration(`${prefix}capMs`, options.capMs ?? 5000)
  if (capMs < baseMs) throw new InvalidOptionError(`${prefix}capMs`, options.capMs, `at least baseMs (${baseMs})`)
  const random = optionalFunction<() => number>(`${prefix}random`, options.random) ?? Math.random
  return {
    plan: {
      attempts,
      backoff: oneOf(`${prefix}backoff`, options.backoff ?? 'full-jitter', BACKOFF_KINDS),
      baseMs,
      capMs,
      maxRetryAfterMs: duration(`${prefix}maxRetryAfterMs`, options.maxRetryAfterMs ?? 10_000),
      random,
    },
    retryOn: optionalFunction(`${prefix}retryOn`, options.retryOn),
    discard: optionalFunction(`${prefix}discard`, options.discard),
    budget: resolveBudget(`${prefix}budget`, options.budget),
  }
}

/** @internal A budget option: options, a shared instance, `false`, or the default. */
export function resolveBudget(
  option: string,
  value: RetryBudgetOptions | RetryBudget | false | undefined,
): RetryBudget | undefined {
  if (value === false) return undefined
  if (value instanceof RetryBudget) return value
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionError(option, value, 'budget options, a RetryBudget or false')
  }
  return new RetryBudget(value)
}

/**
 * Create a retry policy. Only idempotent work is retried (`ExecuteOptions.idempotent`, default `true`); the
 * caller's abort, its deadline, an open circuit and a full bulkhead are never retried. Each retry waits a
 * jittered backoff (or the dependency's `Retry-After`, up to `maxRetryAfterMs`) unless that would pass the
 * caller's deadline, and spends the retry budget; when retries stop, the last error surfaces (or the last
 * result is returned: a 503 `Response` stays a `Response`). Usually a layer of `dependency()`, which puts it
 * above the breaker so each attempt is counted; alone, put it outermost in {@link compose}.
 *
 * @example
 * import { compose, createAttemptTimeout, createRetry } from '@breakwater/core'
 *
 * const policy = compose(
 *   createRetry({ name: 'geo', attempts: 3, baseMs: 20, capMs: 200 }),
 *   createAttemptTimeout({ name: 'geo', timeoutMs: 300 }),
 * )
 * export const locate = (ip: string) =>
 *   policy.execute(({ signal }) => fetch(`http://127.0.0.1:4000/geo/${ip}`, { signal }))
 */
export function createRetry(options: RetryOptions & { name: string }): Retry {
  return new Retry(options)
}

/** A retry policy. Create one with {@link createRetry}. */
export class Retry implements Policy {
  readonly name: string
  /** Its retry budget, if it has one. */
  readonly budget: RetryBudget | undefined
  readonly #engine: Engine

  constructor(options: RetryOptions & { name: string }) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
    const name = policyName('name', options.name)
    const resolved = resolveRetry('', options)
    this.name = name
    this.budget = resolved.budget
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
      retry: resolved.plan,
      hedge: undefined,
      retryOn: resolved.retryOn,
      discard,
      budget: resolved.budget,
      publishCalls: false,
      clock: monotonicNow,
    }
  }

  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return runResilient(this.#engine, work, options)
  }
}
