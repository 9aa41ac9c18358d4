// The one shape of every policy that guards work: `execute((ctx) => work(ctx.signal), options)`, and `compose`
// to nest policies, each layer handing its context (signal, deadline, attempt) to the next (cockatiel's `wrap`).

/** What a policy hands the work it runs. */
export interface ExecuteContext {
  /**
   * Aborted when the work should stop: the caller's signal aborted, the caller's deadline passed, or the attempt
   * timed out. Its `reason` says which. Pass it on (`fetch(url, { signal })`) so cancellation really cancels.
   */
  readonly signal: AbortSignal
  /** When the work must be done by, as a Unix epoch in ms (comparable with `Date.now()`); `Infinity` for never. */
  readonly deadline: number
  /** 1 for the first attempt; retries and hedges count up. */
  readonly attempt: number
}

/**
 * The caller's request context: the timeout policy's `req.breakwater` / `ctx.breakwater` / `request.breakwater`
 * (a {@link RequestContext}) or anything with the same `signal`, `deadline` and `remainingMs()`.
 */
export interface CallerContext {
  readonly signal: AbortSignal
  /** Unix epoch ms; `Infinity` for none. */
  readonly deadline: number
  remainingMs?(): number
}

/** How the caller bounds one `execute`: its signal and deadline, or its request context that carries both. */
export interface ExecuteOptions {
  /** The caller's signal: aborting it abandons the call (not counted against the dependency). */
  signal?: AbortSignal
  /** The caller's deadline, a Unix epoch in ms. With none left the call fails with `DeadlineExceededError`. */
  deadline?: number
  /** The request context of the timeout policy (`req.breakwater`): its signal and deadline are used. */
  context?: CallerContext
  /** Attempt number to report (set by an enclosing retry). Default `1`. */
  attempt?: number
  /**
   * Whether the work may run more than once. `false`: never retried nor hedged (a POST without an
   * Idempotency-Key). Default `true`; HTTP integrations compute it from the method and the Idempotency-Key.
   */
  idempotent?: boolean
  /** The key stale-if-error stores this call's result under (required when stale-if-error guards the call). */
  cacheKey?: string
}

/** The work a policy runs. */
export type Work<T> = (context: ExecuteContext) => T | PromiseLike<T>

/** A policy that guards work. Every outbound policy, a {@link compose}d stack and a `dependency()` are one. */
export interface Policy {
  /**
   * Run `work` under this policy. Resolves with its value or rejects with its error, or with the policy's own
   * (`CircuitOpenError`, `BulkheadFullError`, `AttemptTimeoutError`, `DeadlineExceededError`, or the caller's
   * abort reason).
   */
  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T>
}

/**
 * Nest policies: the first is the outermost. Each layer runs the next inside its `execute`, handing on its
 * context's signal, deadline and attempt, so a timeout inside a breaker is seen by the breaker as a failure.
 *
 * @example
 * import { compose, createAttemptTimeout, createBulkhead, createCircuitBreaker } from '@breakwater/core'
 *
 * const policy = compose(
 *   createCircuitBreaker({ name: 'search' }),
 *   createBulkhead({ name: 'search', limit: 10 }),
 *   createAttemptTimeout({ name: 'search', timeoutMs: 300 }),
 * )
 * export const search = (q: string) =>
 *   policy.execute(({ signal }) => fetch(`http://127.0.0.1:4000/search?q=${q}`, { signal }))
 */
export function compose(...policies: Policy[]): Policy {
  for (const [index, policy] of policies.entries()) {
    if (typeof policy?.execute !== 'function') throw new TypeError(`compose(): argument ${index} is not a policy`)
  }
  const last = policies.length - 1
  if (last < 0) return { execute: (work, options) => runBare(work, options) }
  const step = <T>(index: number, work: Work<T>, options: ExecuteOptions | undefined): Promise<T> =>
    (policies[index] as Policy).execute<T>(
      index === last
        ? work
        : (context) =>
            step(index + 1, work, {
              signal: context.signal,
              deadline: context.deadline,
              attempt: context.attempt,
              // Per call, not per layer: every layer that stores results (stale-if-error) needs it.
              cacheKey: options?.cacheKey,
            }),
      options,
    )
  return { execute: (work, options) => step(0, work, options) }
}

/** No policy: the work with the caller's own signal and deadline. */
async function runBare<T>(work: Work<T>, options: ExecuteOptions | undefined): Promise<T> {
  const signal = options?.context?.signal ?? options?.signal ?? new AbortController().signal
  const deadline = options?.context?.deadline ?? options?.deadline ?? Number.POSITIVE_INFINITY
  return work({ signal, deadline, attempt: options?.attempt ?? 1 })
}
