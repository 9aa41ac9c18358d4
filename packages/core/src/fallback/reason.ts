// Why a guarded call failed, in the few words fallback and stale-if-error choose by. The caller's own abort is
// not among them: it is not the dependency failing, and nobody is left to take a substitute answer.

import {
  InvalidOptionError,
  isAttemptTimeoutError,
  isBulkheadFullError,
  isCircuitOpenError,
  isDeadlineExceededError,
  isInvalidOptionError,
  isRequestAbortedError,
} from '../errors.js'
import type { ExecuteOptions } from '../execute/policy.js'

/** Why a call failed, as fallback and stale-if-error see it. */
export type FallbackReason = 'circuit-open' | 'bulkhead-full' | 'timeout' | 'retries-exhausted' | 'error'

/** Which failures a fallback or stale-if-error answers: a list of reasons, or a predicate on the error. */
export type FailureFilter = readonly FallbackReason[] | ((error: unknown) => boolean)

const REASONS: readonly FallbackReason[] = ['circuit-open', 'bulkhead-full', 'timeout', 'retries-exhausted', 'error']

/** A brand shared by every copy of the package (dual ESM/CJS installs), as the error brand is. */
const RETRIES_EXHAUSTED = Symbol.for('breakwater.retriesExhausted')

/**
 * @internal Mark `error` as the last failure of a retry that gave up (attempts used up, budget refused, or no time
 * left for another), so a fallback reports `retries-exhausted`. The error itself is what the caller sees; the
 * mark is a non-enumerable property. Primitives and frozen objects cannot carry it and stay plain failures.
 */
export function markRetriesExhausted(error: unknown, attempts: number): void {
  if ((typeof error !== 'object' && typeof error !== 'function') || error === null) return
  try {
    Object.defineProperty(error, RETRIES_EXHAUSTED, { value: attempts, configurable: true })
  } catch {
    // Frozen or a proxy that refuses: it stays an ordinary failure.
  }
}

/** @internal The attempts a retry made before it gave up with `error`, if it marked it. */
export function retriesExhausted(error: unknown): number | undefined {
  if ((typeof error !== 'object' && typeof error !== 'function') || error === null) return undefined
  const attempts = (error as Record<symbol, unknown>)[RETRIES_EXHAUSTED]
  return typeof attempts === 'number' ? attempts : undefined
}

/**
 * @internal The reason of a failure. A retry's give-up mark wins over the kind of its last error: the caller
 * asked for attempts and they were all spent.
 */
export function failureReason(error: unknown): FallbackReason {
  if (retriesExhausted(error) !== undefined) return 'retries-exhausted'
  if (isCircuitOpenError(error)) return 'circuit-open'
  if (isBulkheadFullError(error)) return 'bulkhead-full'
  if (isAttemptTimeoutError(error) || isDeadlineExceededError(error)) return 'timeout'
  return 'error'
}

/**
 * @internal Not a failure to answer for: the caller gave up (its signal aborted — client gone, its request
 * deadline, shutdown — or a request abort), or the call was misconfigured (`InvalidOptionError`, a bug to surface,
 * not an outage to hide).
 */
export function notToSubstitute(error: unknown, options: ExecuteOptions | undefined): boolean {
  if (isRequestAbortedError(error) || isInvalidOptionError(error)) return true
  const signal = options?.context?.signal ?? options?.signal
  return signal?.aborted === true
}

/** @internal The `on` option as a predicate over (reason, error). Default: every reason. */
export function failureFilter(option: string, value: unknown): (reason: FallbackReason, error: unknown) => boolean {
  if (value === undefined) return () => true
  if (typeof value === 'function') {
    const predicate = value as (error: unknown) => boolean
    return (_reason, error) => predicate(error) === true
  }
  if (Array.isArray(value) && value.length > 0) {
    for (const reason of value) {
      if (!REASONS.includes(reason)) {
        throw new InvalidOptionError(option, reason, `one of ${REASONS.map((r) => JSON.stringify(r)).join(', ')}`)
      }
    }
    const chosen = new Set<FallbackReason>(value as FallbackReason[])
    return (reason) => chosen.has(reason)
  }
  throw new InvalidOptionError(option, value, 'a non-empty list of reasons or a function (error) => boolean')
}
