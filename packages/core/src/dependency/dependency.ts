// A named dependency: the usual outbound stack for one downstream service, built in one fixed order.

import { attemptTimeoutMs } from '../attempt-timeout/attempt-timeout.js'
import { Bulkhead, type BulkheadOptions } from '../bulkhead/bulkhead.js'
import { CircuitBreaker, type CircuitBreakerOptions } from '../circuit-breaker/circuit-breaker.js'
import { InvalidOptionError } from '../errors.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { type Served, type ServeNext, servedUpstream, servedValue } from '../execute/served.js'
import { Fallback, type FallbackOptions } from '../fallback/fallback.js'
import { type HedgeOptions, resolveHedge } from '../hedge/hedge.js'
import { monotonicNow } from '../internal/clock.js'
import { type Duration, knownOptions, optionKeys, policyName } from '../internal/validate.js'
import type { RetryBudget } from '../retry/budget.js'
import { discardResult } from '../retry/classify.js'
import { type RetryOptions, resolveBudget, resolveRetry } from '../retry/retry.js'
import { StaleIfError, type StaleIfErrorOptions } from '../stale-if-error/stale-if-error.js'
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
  /** The last good result per `cacheKey`, served when the call fails (see `createStaleIfError`). Default: none. */
  staleIfError?: Omit<StaleIfErrorOptions, 'name'> | false
  /** A value served when the call fails, outermost: after stale-if-error found nothing (see `createFallback`). */
  fallback?: Omit<FallbackOptions, 'name'> | false
}

const KEYS = optionKeys<DependencyOptions>()([
  'breaker',
  'bulkhead',
  'attemptTimeoutMs',
  'retry',
  'hedge',
  'staleIfError',
  'fallback',
])

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
  /** Its stale-if-error layer (`store`, `maxStaleMs`), if it has one. */
  readonly staleIfError: StaleIfError | undefined
  /** Its fallback layer, if it has one. */
  readonly fallback: Fallback | undefined
  /** Like `execute`, and says where the answer came from (always `upstream` without fallback / stale-if-error). */
  run<T>(work: Work<T>, options?: ExecuteOptions): Promise<Served<T>>
}

/**
 * A named dependency: one object per downstream service, guarding its calls with these layers, in this fixed
 * order (outermost first; each is optional, `false` switches off the three on by default):
 *
 * 1. **fallback** — outermost: a value when everything below failed (stale-if-error included).
 * 2. **stale-if-error** — the last good result per `cacheKey`, when the layers below failed; it stores each
 *    upstream answer.
 * 3. **retry / hedge** — more attempts for idempotent calls, within the caller's deadline and one retry budget
 *    (20 % of first attempts + 10/s by default). Above the breaker, so each attempt is counted; a retry the
 *    breaker refuses ends the call with `CircuitOpenError`; hedges are not sent while it is not closed.
 * 4. **circuit breaker** — an open circuit rejects before anything else is spent: no bulkhead slot, no timer.
 *    It sees the layers below as the dependency: an attempt timeout is a failure; a full bulkhead is not (the
 *    dependency was never called), nor is the caller's own abort or deadline.
 * 5. **bulkhead** — only attempts the breaker let through take a slot (hedges too); the queue wait is bounded by
 *    the caller's deadline but not charged to the attempt timeout.
 * 6. **attempt timeout** — innermost, so it times the dependency alone, and each attempt gets its own limit:
 *    `min(attemptTimeoutMs, remaining budget)`.
 *
 * With no budget left the call fails with `DeadlineExceededError` without touching any layer. Pass the request
 * context (`{ context: req.breakwater }`) or `{ signal, deadline }` so the caller's limits bound every call;
 * `{ idempotent: false }` for work that must not run twice (never retried nor hedged).
 *
 * @example
 * import { dependency } from '@breakwater/core'
 *
 * const inventory = dependency('inventory', {
 *   breaker: { consecutiveFailures: 5, openMs: 1000 },
 *   bulkhead: { limit: 8, queue: 8, queueTimeoutMs: 100 },
 *   attemptTimeoutMs: 300,
 *   retry: { attempts: 3, baseMs: 20, capMs: 200, budget: { ratio: 0.2, perSecond: 5 } },
 *   staleIfError: { maxStaleMs: '60s' },
 * })
 * export async function stock(sku: string, signal: AbortSignal) {
 *   const served = await inventory.run(
 *     async (ctx) => {
 *       const res = await fetch(`http://127.0.0.1:4000/inventory/${sku}`, { signal: ctx.signal })
 *       if (!res.ok) throw Object.assign(new Error(`inventory answered ${res.status}`), { status: res.status })
 *       return res.json()
 *     },
 *     { signal, cacheKey: sku },
 *   )
 *   return { stale: served.source === 'stale', data: served.value }
 * }
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
  const staleIfError =
    options.staleIfError === undefined || options.staleIfError === false
      ? undefined
      : new StaleIfError({ ...layer('staleIfError', options.staleIfError), name })
  const fallback =
    options.fallback === undefined || options.fallback === false
      ? undefined
      : new Fallback({ ...layer('fallback', options.fallback), name })
  let run: <T>(work: Work<T>, executeOptions?: ExecuteOptions) => Promise<Served<T>>
  if (staleIfError === undefined && fallback === undefined) {
    run = (work, executeOptions) => execute(work, executeOptions).then(servedUpstream)
  } else {
    const guarded = execute
    run = <T>(work: Work<T>, executeOptions?: ExecuteOptions): Promise<Served<T>> => {
      let next: ServeNext<T> = () => guarded(work, executeOptions).then(servedUpstream)
      if (staleIfError !== undefined) {
        const inner = next
        next = () => staleIfError.serve(inner, executeOptions)
      }
      if (fallback === undefined) return next()
      return fallback.serve(next, executeOptions) as Promise<Served<T>>
    }
    execute = (work, executeOptions) => run(work, executeOptions).then(servedValue)
  }
  return { name, breaker, bulkhead, attemptTimeoutMs: timeoutMs, budget, staleIfError, fallback, execute, run }
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
