// Fallback: when a guarded call fails for a chosen reason, answer with a value instead, and say so.

import { InvalidOptionError } from '../errors.js'
import { channels, type FallbackServedEvent, publish } from '../events.js'
import { compose, type ExecuteOptions, type Policy, type Work } from '../execute/policy.js'
import { type Served, type ServeNext, servedUpstream, servedValue } from '../execute/served.js'
import { knownOptions, optionKeys, policyName } from '../internal/validate.js'
import { type FailureFilter, type FallbackReason, failureFilter, failureReason, notToSubstitute } from './reason.js'

/** Options of {@link createFallback}. */
export interface FallbackOptions<V = unknown> {
  /** Names it in events. Default `"fallback"` (a `dependency()` passes its own name). */
  name?: string
  /**
   * The answer for a failed call: a value, or a function of the reason and the error that returns one (or a
   * promise of one). A function that throws fails the call with its own error. Required.
   */
  value: V | ((reason: FallbackReason, error: unknown) => V | PromiseLike<V>)
  /**
   * Which failures get the fallback: a list of reasons (`circuit-open`, `bulkhead-full`, `timeout`,
   * `retries-exhausted`, `error`) or a predicate on the error. Default: every reason. The caller's own abort is
   * never one.
   */
  on?: FailureFilter
}

const KEYS = optionKeys<FallbackOptions>()(['name', 'value', 'on'])

/** Runs the work with the caller's signal and deadline and nothing else (the empty stack). */
const bare = compose()

/**
 * Create a fallback. `execute` resolves with the work's value, or with the fallback value when the work fails
 * for a reason in `on`; `run` says which it was (`source: 'upstream' | 'fallback'`). Reasons: `circuit-open`
 * (`CircuitOpenError`), `bulkhead-full` (`BulkheadFullError`), `timeout` (`AttemptTimeoutError`,
 * `DeadlineExceededError`), `retries-exhausted` (a retry gave up; wins over its last error's kind), `error`
 * (anything else). The caller's own abort (its signal aborted, or a `RequestAbortedError`) is rethrown, never
 * replaced. Each fallback answer is published on `breakwater:fallback:served`.
 *
 * The fallback value should have the work's type: `execute` cannot check it (`run` types it as `T | V`).
 *
 * @example
 * import { compose, createCircuitBreaker, createFallback } from '@breakwater/core'
 *
 * const recommendations = compose(
 *   createFallback({ name: 'recommendations', value: { items: [] as string[] } }),
 *   createCircuitBreaker({ name: 'recommendations' }),
 * )
 * export const recommend = (signal: AbortSignal) =>
 *   recommendations.execute(
 *     async (ctx) => (await fetch('http://127.0.0.1:4000/recommendations', { signal: ctx.signal })).json(),
 *     { signal },
 *   )
 */
export function createFallback<V>(options: FallbackOptions<V>): Fallback<V> {
  return new Fallback(options)
}

/** A fallback. Create one with {@link createFallback}. */
export class Fallback<V = unknown> implements Policy {
  readonly name: string
  readonly #value: FallbackOptions<V>['value']
  readonly #accepts: (reason: FallbackReason, error: unknown) => boolean

  constructor(options: FallbackOptions<V>) {
    knownOptions('fallback', options, KEYS)
    this.name = policyName('name', options.name ?? 'fallback')
    if (!('value' in options)) throw new InvalidOptionError('value', undefined, 'a value or a function')
    this.#value = options.value
    this.#accepts = failureFilter('on', options.on)
  }

  /** Run `work`; its value, or the fallback value when it failed for a chosen reason. */
  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return this.run(work, options).then(servedValue) as Promise<T>
  }

  /** Run `work` and say where the answer came from. */
  run<T>(work: Work<T>, options?: ExecuteOptions): Promise<Served<T | V>> {
    return this.serve(() => bare.execute(work, options).then(servedUpstream), options)
  }

  /**
   * @internal As a layer of a stack: answer for `next` (the layers below) when it fails. What `next` served
   * (an upstream value, or an inner fallback) passes through.
   */
  serve<T>(next: ServeNext<T>, options: ExecuteOptions | undefined): Promise<Served<T | V>> {
    return next().then(undefined, (error: unknown) => this.#substitute(error, options))
  }

  async #substitute(error: unknown, options: ExecuteOptions | undefined): Promise<Served<V>> {
    if (notToSubstitute(error, options)) throw error
    const reason = failureReason(error)
    if (!this.#accepts(reason, error)) throw error
    const produce = this.#value
    const value =
      typeof produce === 'function'
        ? await (produce as (reason: FallbackReason, error: unknown) => V | PromiseLike<V>)(reason, error)
        : produce
    if (channels.fallbackServed.hasSubscribers) {
      publish(channels.fallbackServed, { policy: this.name, reason } satisfies FallbackServedEvent)
    }
    return { value, source: 'fallback', ageMs: 0, error }
  }
}
