// The bulkhead: at most `limit` calls to one dependency in flight, a bounded FIFO queue with a wait timeout, and
// a fast BulkheadFullError beyond — so one slow dependency cannot hold every connection and every caller.

import { ConcurrencyLimiter } from '../concurrency/concurrency-limiter.js'
import { runGuarded, type Stack } from '../dependency/guarded-call.js'
import { BulkheadFullError, InvalidOptionError } from '../errors.js'
import { type BulkheadDecisionEvent, type BulkheadLimitEvent, channels, publish } from '../events.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { type Duration, duration, knownOptions, nonNegativeInteger, policyName } from '../internal/validate.js'
import type { LimitOptions } from '../load-shedding/limits.js'

/** Options of {@link createBulkhead} (and the `bulkhead` of `dependency()`). */
export interface BulkheadOptions {
  /** Names the bulkhead in events and errors. Default `"bulkhead"`. */
  name?: string
  /**
   * Calls in flight at most: a number (static), or an adaptive limit fed by the calls' latencies — `"aimd"`,
   * `"gradient2"`, `"vegas"` or their options (the load shedder's algorithms). Default `25`.
   */
  limit?: number | 'aimd' | 'gradient2' | 'vegas' | LimitOptions
  /** Calls that may wait for a slot, first in first out. Default `0`: over the limit is rejected at once. */
  queue?: number
  /** Longest wait in the queue (never beyond the caller's deadline). Default `1_000` ms. */
  queueTimeoutMs?: Duration
  /** `retryAfterSeconds` of its {@link BulkheadFullError} (→ `Retry-After`). Default `1`. */
  retryAfterSeconds?: number
}

const KEYS = new Set(['name', 'limit', 'queue', 'queueTimeoutMs', 'retryAfterSeconds'])

/**
 * Create a bulkhead. Options are checked here; an invalid one throws `InvalidOptionError` naming it.
 *
 * @example
 * import { createBulkhead } from '@breakwater/core'
 *
 * const reports = createBulkhead({ name: 'reports', limit: 4, queue: 8, queueTimeoutMs: 200 })
 * export const report = (id: string) =>
 *   reports.execute(({ signal }) => fetch(`http://127.0.0.1:4000/reports/${id}`, { signal }))
 */
export function createBulkhead(options: BulkheadOptions = {}): Bulkhead {
  return new Bulkhead(options)
}

/** A bulkhead. Create one with {@link createBulkhead}. */
export class Bulkhead implements Policy {
  readonly name: string
  /** @internal */
  readonly limiter: ConcurrencyLimiter
  /** @internal */
  readonly queueTimeoutMs: number
  readonly #retryAfterSeconds: number
  /** Whether `breakwater:bulkhead:limit` has told subscribers this bulkhead's limit yet. */
  #limitReported = false
  readonly #stack: Stack

  constructor(options: BulkheadOptions) {
    knownOptions('bulkhead', options, KEYS)
    const name = policyName('name', options.name ?? 'bulkhead')
    this.name = name
    this.limiter = new ConcurrencyLimiter('limit', options.limit ?? 25, nonNegativeInteger('queue', options.queue ?? 0))
    this.queueTimeoutMs = duration('queueTimeoutMs', options.queueTimeoutMs ?? 1000)
    const retryAfter = options.retryAfterSeconds ?? 1
    if (!Number.isSafeInteger(retryAfter) || retryAfter < 1) {
      throw new InvalidOptionError('retryAfterSeconds', retryAfter, 'whole seconds ≥ 1')
    }
    this.#retryAfterSeconds = retryAfter
    this.#stack = {
      name,
      breaker: undefined,
      bulkhead: this,
      timeoutMs: Number.POSITIVE_INFINITY,
      dependency: false,
      calls: false,
      discard: undefined,
    }
  }

  /** Calls in flight at most now (changes in adaptive mode). */
  get limit(): number {
    return this.limiter.limit
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.limiter.inflight
  }

  /** Calls waiting in the queue now. */
  get queued(): number {
    return this.limiter.queued
  }

  /** Run `work` when a slot is free (maybe after queueing), or fail with `BulkheadFullError`. */
  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return runGuarded(this.#stack, work, options)
  }

  /** @internal */
  rejection(reason: 'full' | 'queue_timeout'): BulkheadFullError {
    return new BulkheadFullError(this.name, reason, this.#retryAfterSeconds)
  }

  /** @internal Callers check `channels.bulkheadDecision.hasSubscribers` first. */
  publishDecision(
    outcome: BulkheadDecisionEvent['outcome'],
    queuedMs: number,
    reason?: 'full' | 'queue_timeout',
  ): void {
    // A static limit never changes: report it once, at first use, so metrics show every bulkhead's limit.
    if (!this.#limitReported) this.publishLimit()
    publish(channels.bulkheadDecision, {
      policy: this.name,
      outcome,
      reason,
      queuedSeconds: queuedMs / 1000,
    } satisfies BulkheadDecisionEvent)
  }

  /** @internal The adaptive limit moved (or is reported for the first time). */
  publishLimit(): void {
    if (!channels.bulkheadLimit.hasSubscribers) return
    this.#limitReported = true
    const limiter = this.limiter
    publish(channels.bulkheadLimit, {
      policy: this.name,
      limit: limiter.limit,
      inFlight: limiter.inflight,
      queued: limiter.queued,
    } satisfies BulkheadLimitEvent)
  }
}
