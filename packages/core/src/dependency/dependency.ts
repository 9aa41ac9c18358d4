// A named dependency: the usual outbound stack for one downstream service, built in one fixed order.

import { attemptTimeoutMs } from '../attempt-timeout/attempt-timeout.js'
import { Bulkhead, type BulkheadOptions } from '../bulkhead/bulkhead.js'
import { CircuitBreaker, type CircuitBreakerOptions } from '../circuit-breaker/circuit-breaker.js'
import { InvalidOptionError } from '../errors.js'
import type { ExecuteOptions, Policy, Served, Work } from '../execute/policy.js'
import { type HedgeOptions, resolveHedge } from '../hedge/hedge.js'
import { monotonicNow } from '../internal/clock.js'
import { type Duration, knownOptions, optionKeys, policyName } from '../internal/validate.js'
import type { RetryBudget } from '../retry/budget.js'
import { discardResult } from '../retry/classify.js'
import { type RetryOptions, resolveBudget, resolveRetry } from '../retry/retry.js'
import { runGuarded, type Stack } from './guarded-call.js'
import { type Engine, runResilient } from './resilient-call.js'

/** Options of {@link dependency}. Each layer can be switched off with `false`. */
export interface DependencyOptions {
  /** The circuit breaker (its `name` is the dependency's). Default: the breaker's defaults. */
  breaker?: Omit<CircuitBreakerOptions, 'name'> | false
  /** The bulkhead (its `name` is the dependency's). Default: the bulkhead's defaults (25 in flight, no queue). */
  bulkhead?: Omit<BulkheadOptions, 'name'> | false
  /** Each attempt's time limit (the caller's remaining budget, if smaller, wins). Default `10_000` ms. */
  attemptTimeoutMs?: Duration | false
  /**
   * Retries of idempotent calls, above the breaker (each attempt is counted) and within the retry budget
   * (`retry.budget`, also spent by hedges). Default: none (`false`); `{}` for the retry's defaults.
   */
  retry?: RetryOptions | false
  /** Hedged attempts of idempotent calls. Default: none (`false`). */
  hedge?: HedgeOptions | false
}

const KEYS = optionKeys<DependencyOptions>()(['breaker', 'bulkhead', 'attemptTimeoutMs', 'retry', 'hedge'])

/** One downstream service's outbound stack. Create it with {@link dependency}. */
export interface Dependency extends Policy {
  readonly name: string
  /** Its circuit breaker (`state`, `isolate()`, `reset()`, `snapshot()`), if it has one. */
  readonly breaker: CircuitBreaker | undefined
  /** Its bulkhead (`limit`, `inFlight`, `queued`), if it has one. */
  readonly bulkhead: Bulkhead | undefined
  /** The attempt timeout in ms (`Infinity` when off). */
  readonly attemptTimeoutMs: number
  /** The retry budget its retries and hedges spend, if it has one. */
  readonly budget: RetryBudget | undefined
  /** Like `execute`, and says where the answer came from (always `upstream` without fallback / stale-if-error). */
  run<T>(work: Work<T>, options?: ExecuteOptions): Promise<Served<T>>
}

/**
 * A named dependency: one object per downstream service, guarding its calls with a circuit breaker, a bulkhead
 * and an attempt timeout, in this fixed order (outermost first):
 *
 * 1. **circuit breaker** — an open circuit rejects before anything else is spent: no bulkhead slot, no timer.
 *    It sees the layers below as the dependency: an attempt timeout is a failure; a full bulkhead is not (the
 *    dependency was never called), nor is the caller's own abort or deadline.
 * 2. **bulkhead** — only calls the breaker let through take a slot; the queue wait is bounded by the caller's
 *    deadline but not charged to the attempt timeout.
 * 3. **attempt timeout** — innermost, so it times the dependency alone, and each attempt (Outbound protection
 *    II's retries and hedges wrap this stack) gets its own limit: `min(attemptTimeoutMs, remaining budget)`.
 *
 * With no budget left the call fails with `DeadlineExceededError` without touching any layer. Pass the request
 * context (`{ context: req.breakwater }`) or `{ signal, deadline }` so the caller's limits bound every call.
 *
 * @example
 * import { dependency } from '@breakwater/core'
 *
 * const inventory = dependency('inventory', {
 *   breaker: { consecutiveFailures: 5, openMs: 1000 },
 *   bulkhead: { limit: 8, queue: 8, queueTimeoutMs: 100 },
 *   attemptTimeoutMs: 300,
 * })
 * export const stock = (sku: string, signal: AbortSignal) =>
 *   inventory.execute(({ signal }) => fetch(`http://127.0.0.1:4000/inventory/${sku}`, { signal }), { signal })
 */
export function dependency(name: string, options: DependencyOptions = {}): Dependency {
  policyName('name', name)
  knownOptions('dependency', options, KEYS)
  const breaker =
    options.breaker === false ? undefined : new CircuitBreaker({ ...layer('breaker', options.breaker), name })
  const bulkhead =
    options.bulkhead === false ? undefined : new Bulkhead({ ...layer('bulkhead', options.bulkhead), name })
  const timeoutMs =
    options.attemptTimeoutMs === false
      ? Number.POSITIVE_INFINITY
      : attemptTimeoutMs('attemptTimeoutMs', options.attemptTimeoutMs ?? 10_000)
  const retry =
    options.retry === undefined || options.retry === false ? undefined : resolveRetry('retry.', options.retry)
  const hedge =
    options.hedge === undefined || options.hedge === false ? undefined : resolveHedge('hedge.', options.hedge)
  const discard = retry?.discard ?? hedge?.discard ?? discardResult
  const single: Stack = { name, breaker, bulkhead, timeoutMs, dependency: true, calls: true, discard }
  let budget: RetryBudget | undefined
  let execute: <T>(work: Work<T>, executeOptions?: ExecuteOptions) => Promise<T>
  if (retry === undefined && hedge === undefined) {
    execute = (work, executeOptions) => runGuarded(single, work, executeOptions)
  } else {
    // One budget for retries and hedges: both are extra load on the same dependency.
    budget = retry !== undefined ? retry.budget : resolveBudget('hedge.budget', hedge?.budget)
    const engine: Engine = {
      name,
      attempts: { ...single, calls: false },
      single,
      retry: retry?.plan,
      hedge: hedge?.plan,
      retryOn: retry?.retryOn ?? hedge?.retryOn,
      discard,
      budget,
      publishCalls: true,
      clock: breaker?.clock ?? monotonicNow,
    }
    execute = (work, executeOptions) => runResilient(engine, work, executeOptions)
  }
  return {
    name,
    breaker,
    bulkhead,
    attemptTimeoutMs: timeoutMs,
    budget,
    execute,
    run<T>(work: Work<T>, executeOptions?: ExecuteOptions): Promise<Served<T>> {
      return execute(work, executeOptions).then(upstream)
    },
  }
}

function upstream<T>(value: T): Served<T> {
  return { value, source: 'upstream', ageMs: 0 }
}

function layer<T extends object>(option: string, value: T | undefined): T {
  if (value === undefined) return {} as T
  if (typeof value !== 'object' || value === null) throw new InvalidOptionError(option, value, 'options or false')
  if ('name' in value)
    throw new InvalidOptionError(
      `${option}.name`,
      (value as { name: unknown }).name,
      'no name (the dependency names it)',
    )
  return value
}
