// The attempt timeout: each attempt gets a signal aborted by whichever comes first — the caller's signal, the
// attempt timeout, or the caller's deadline — and the call fails at that moment, whatever the work does.

import { runGuarded, type Stack } from '../dependency/guarded-call.js'
import { InvalidOptionError } from '../errors.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { type Duration, duration, knownOptions, policyName } from '../internal/validate.js'
import { MAX_TIMEOUT_MS } from '../timeout/request-context.js'

/** Options of {@link createAttemptTimeout}. */
export interface AttemptTimeoutOptions {
  /** Names it in errors. Default `"attempt-timeout"`. */
  name?: string
  /** The attempt's time limit (ms or `"300ms"`); the caller's remaining budget, if smaller, wins. Required. */
  timeoutMs: Duration
}

const KEYS = new Set(['name', 'timeoutMs'])

/**
 * Create an attempt timeout. An attempt past `timeoutMs` fails with `AttemptTimeoutError` (504, counted by a
 * breaker); one past the caller's deadline with `DeadlineExceededError` (504, not counted); with no budget
 * left the work is not started at all. The signal handed to the work is aborted with that error as its reason.
 *
 * @example
 * import { createAttemptTimeout } from '@breakwater/core'
 *
 * const timeout = createAttemptTimeout({ name: 'geo', timeoutMs: 250 })
 * export const locate = (ip: string, signal: AbortSignal) =>
 *   timeout.execute((ctx) => fetch(`http://127.0.0.1:4000/geo/${ip}`, { signal: ctx.signal }), { signal })
 */
export function createAttemptTimeout(options: AttemptTimeoutOptions): AttemptTimeout {
  return new AttemptTimeout(options)
}

/** An attempt timeout. Create one with {@link createAttemptTimeout}. */
export class AttemptTimeout implements Policy {
  readonly name: string
  readonly timeoutMs: number
  readonly #stack: Stack

  constructor(options: AttemptTimeoutOptions) {
    knownOptions('attemptTimeout', options, KEYS)
    const name = policyName('name', options.name ?? 'attempt-timeout')
    this.name = name
    this.timeoutMs = attemptTimeoutMs('timeoutMs', options.timeoutMs)
    this.#stack = {
      name,
      breaker: undefined,
      bulkhead: undefined,
      timeoutMs: this.timeoutMs,
      dependency: false,
      calls: false,
      discard: undefined,
    }
  }

  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return runGuarded(this.#stack, work, options)
  }
}

/** @internal A timeout option, bounded like the request timeout (setTimeout's range). */
export function attemptTimeoutMs(option: string, value: unknown): number {
  const ms = duration(option, value)
  if (ms > MAX_TIMEOUT_MS) throw new InvalidOptionError(option, value, `at most ${MAX_TIMEOUT_MS} ms`)
  return ms
}
