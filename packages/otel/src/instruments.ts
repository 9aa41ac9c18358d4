// Every instrument of the package, created once per instrument() call on the scope `@breakwater/otel` + version.
// Counts and gauges are observable (reported from in-process tables at collection time); durations are
// histograms with explicit bucket advice, recorded as they happen.

import type { Histogram, Meter, Observable } from '@opentelemetry/api'
import { SeriesTable } from './series.js'

/** Buckets for decisions that are a store round trip or less (rate limit, idempotency): 100 µs to 1 s. */
export const DECISION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
/** Buckets for the age of a stale answer: 100 ms to 1 h. */
export const AGE_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
/** Buckets for queue waits and calls to dependencies: 1 ms to 10 s. */
export const WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

interface CounterSpec {
  readonly name: string
  readonly unit: string
  readonly description: string
}

/** The observable counters: name → unit and description. Their values live in {@link Instruments.counts}. */
export const COUNTERS = {
  rateLimitRequests: {
    name: 'breakwater.rate_limit.requests',
    unit: '{request}',
    description: 'Rate-limit decisions, by outcome (allowed, limited, skipped, store_error).',
  },
  rateLimitRefunds: {
    name: 'breakwater.rate_limit.refunds',
    unit: '{request}',
    description: 'Rate-limit refunds of a consumed request, by outcome (refunded, store_error).',
  },
  storeErrors: {
    name: 'breakwater.store.errors',
    unit: '{error}',
    description: 'Store calls that failed or timed out, by operation, error type and what the failure policy did.',
  },
  idempotencyRequests: {
    name: 'breakwater.idempotency.requests',
    unit: '{request}',
    description: 'Idempotency decisions, by outcome (executed, replayed, conflict, mismatch, …).',
  },
  idempotencySettled: {
    name: 'breakwater.idempotency.settled',
    unit: '{request}',
    description: 'What became of claimed keys (stored, released, lost, store_error), by reason.',
  },
  timeoutRequests: {
    name: 'breakwater.timeout.requests',
    unit: '{request}',
    description: 'Requests under a timeout policy, by outcome (completed, timed_out, deadline_exceeded, …).',
  },
  timeoutLateWrites: {
    name: 'breakwater.timeout.late_writes',
    unit: '{write}',
    description: 'Handlers that wrote after their request had been answered at the deadline.',
  },
  loadSheddingRequests: {
    name: 'breakwater.load_shedding.requests',
    unit: '{request}',
    description: 'Load-shedding decisions, by outcome (admitted, queued, shed, abandoned, skipped) and reason.',
  },
  healthChecks: {
    name: 'breakwater.health.checks',
    unit: '{check}',
    description: 'Health check runs, by check and outcome (pass, warn, fail, timed_out).',
  },
  healthProbes: {
    name: 'breakwater.health.probes',
    unit: '{probe}',
    description: 'Probes answered (live, ready, startup), by outcome (pass, warn, fail).',
  },
  shutdownPhases: {
    name: 'breakwater.shutdown.phases',
    unit: '{phase}',
    description: 'Graceful-shutdown phases reached (draining, closing, timed_out, hook, exit).',
  },
  warnings: {
    name: 'breakwater.warnings',
    unit: '{warning}',
    description: 'One-time configuration warnings, by code.',
  },
  circuitBreakerTransitions: {
    name: 'breakwater.circuit_breaker.transitions',
    unit: '{transition}',
    description: 'Circuit-breaker state changes, by the state entered and the reason.',
  },
  circuitBreakerCalls: {
    name: 'breakwater.circuit_breaker.calls',
    unit: '{call}',
    description: 'Calls through a circuit breaker, by outcome (success, failure, rejected, ignored) and slowness.',
  },
  bulkheadRequests: {
    name: 'breakwater.bulkhead.requests',
    unit: '{request}',
    description: 'Bulkhead decisions, by outcome (admitted, rejected, aborted) and reason.',
  },
  dependencyAttempts: {
    name: 'breakwater.dependency.attempts',
    unit: '{attempt}',
    description:
      'Attempts of calls to a dependency, by outcome; `breakwater.retry` is true for every attempt after the first.',
  },
  dependencyCalls: {
    name: 'breakwater.dependency.calls',
    unit: '{call}',
    description:
      'Calls to a dependency, by final outcome; `breakwater.retried` is true when it took more than one attempt.',
  },
  retryScheduled: {
    name: 'breakwater.retry.scheduled',
    unit: '{retry}',
    description: 'Retries scheduled, by reason (timed_out, error, status) and whether the delay was a Retry-After.',
  },
  retryBudgetExhausted: {
    name: 'breakwater.retry.budget_exhausted',
    unit: '{attempt}',
    description: 'Retries and hedges not sent because the retry budget was spent, by kind (retry, hedge).',
  },
  hedgeLaunched: {
    name: 'breakwater.hedge.launched',
    unit: '{attempt}',
    description: 'Hedged attempts started, by trigger (delay, failure).',
  },
  hedgeSettled: {
    name: 'breakwater.hedge.settled',
    unit: '{call}',
    description: 'Hedged calls answered, by the attempt that won (`breakwater.outcome`: primary, hedge).',
  },
  fallbackServed: {
    name: 'breakwater.fallback.served',
    unit: '{call}',
    description: 'Failed calls answered with a fallback value, by why they failed (`breakwater.reason`).',
  },
  staleServed: {
    name: 'breakwater.stale.served',
    unit: '{call}',
    description: 'Failed calls answered with a stored earlier result (stale-if-error), by why they failed.',
  },
} as const satisfies Record<string, CounterSpec>

/** The observable gauges: last known values, reported as they stand at collection time. */
export const GAUGES = {
  loadSheddingLimit: {
    name: 'breakwater.load_shedding.limit',
    unit: '{request}',
    description: 'The concurrency limit of a load shedder (static, or where its adaptive algorithm has moved it).',
  },
  loadSheddingActive: {
    name: 'breakwater.load_shedding.active_requests',
    unit: '{request}',
    description: 'Requests holding a load-shedding permit, as of the shedder’s last decision.',
  },
  loadSheddingQueued: {
    name: 'breakwater.load_shedding.queued_requests',
    unit: '{request}',
    description: 'Requests waiting for a load-shedding permit, as of the shedder’s last decision.',
  },
  loadSheddingPressure: {
    name: 'breakwater.load_shedding.pressure',
    unit: '1',
    description: 'Process pressure level: 0 (no signal over threshold) to 1 (shed every sheddable request).',
  },
  circuitBreakerState: {
    name: 'breakwater.circuit_breaker.state',
    unit: '1',
    description: 'Circuit-breaker state: 1 for the current state of each policy, 0 for the others.',
  },
  bulkheadLimit: {
    name: 'breakwater.bulkhead.limit',
    unit: '{request}',
    description: 'The concurrency limit of a bulkhead, as last changed.',
  },
  bulkheadActive: {
    name: 'breakwater.bulkhead.active_requests',
    unit: '{request}',
    description: 'Calls holding a bulkhead permit, as of the last limit change.',
  },
  bulkheadQueued: {
    name: 'breakwater.bulkhead.queued_requests',
    unit: '{request}',
    description: 'Calls waiting for a bulkhead permit, as of the last limit change.',
  },
} as const satisfies Record<string, CounterSpec>

/** The histograms, with their bucket advice. */
export const HISTOGRAMS = {
  rateLimitDuration: {
    name: 'breakwater.rate_limit.decision.duration',
    unit: 's',
    description:
      'Time a rate-limit decision spent in a remote store (in-process stores and skipped requests: not recorded).',
    buckets: DECISION_BUCKETS,
  },
  idempotencyDuration: {
    name: 'breakwater.idempotency.decision.duration',
    unit: 's',
    description: 'Time to decide an idempotent request: store calls and any bounded wait for an in-progress key.',
    buckets: DECISION_BUCKETS,
  },
  loadSheddingQueueDuration: {
    name: 'breakwater.load_shedding.queue.duration',
    unit: 's',
    description: 'Time requests waited in the load-shedding queue, by how the wait ended (admitted, shed, abandoned).',
    buckets: WAIT_BUCKETS,
  },
  healthCheckDuration: {
    name: 'breakwater.health.check.duration',
    unit: 's',
    description: 'Duration of health check runs.',
    buckets: WAIT_BUCKETS,
  },
  bulkheadQueueDuration: {
    name: 'breakwater.bulkhead.queue.duration',
    unit: 's',
    description: 'Time calls waited for a bulkhead permit, by outcome.',
    buckets: WAIT_BUCKETS,
  },
  dependencyAttemptDuration: {
    name: 'breakwater.dependency.attempt.duration',
    unit: 's',
    description: 'Duration of each attempt of a call to a dependency, by outcome.',
    buckets: WAIT_BUCKETS,
  },
  dependencyCallDuration: {
    name: 'breakwater.dependency.call.duration',
    unit: 's',
    description: 'Duration of calls to a dependency, retries and backoff included, by outcome.',
    buckets: WAIT_BUCKETS,
  },
  staleAge: {
    name: 'breakwater.stale.age',
    unit: 's',
    description: 'Age of the stored results served by stale-if-error, by why the call failed.',
    buckets: AGE_BUCKETS,
  },
} as const

export type CounterName = keyof typeof COUNTERS
export type GaugeName = keyof typeof GAUGES
export type HistogramName = keyof typeof HISTOGRAMS

/** The instruments of one instrument() call and the tables behind the observable ones. */
export class Instruments {
  readonly counts = {} as Record<CounterName, SeriesTable>
  readonly gauges = {} as Record<GaugeName, SeriesTable>
  readonly histograms = {} as Record<HistogramName, Histogram>
  /** Attribute sets of the load-shedding queue histogram (policy, outcome), built once each. */
  readonly waitAttributes = new SeriesTable()
  readonly #observed: Array<[Observable, SeriesTable]> = []

  constructor(meter: Meter) {
    for (const [key, spec] of Object.entries(COUNTERS) as Array<[CounterName, CounterSpec]>) {
      const table = new SeriesTable()
      const counter = meter.createObservableCounter(spec.name, { unit: spec.unit, description: spec.description })
      this.#observe(counter, table)
      this.counts[key] = table
    }
    for (const [key, spec] of Object.entries(GAUGES) as Array<[GaugeName, CounterSpec]>) {
      const table = new SeriesTable()
      const gauge = meter.createObservableGauge(spec.name, { unit: spec.unit, description: spec.description })
      this.#observe(gauge, table)
      this.gauges[key] = table
    }
    for (const [key, spec] of Object.entries(HISTOGRAMS) as Array<
      [HistogramName, (typeof HISTOGRAMS)[HistogramName]]
    >) {
      this.histograms[key] = meter.createHistogram(spec.name, {
        unit: spec.unit,
        description: spec.description,
        advice: { explicitBucketBoundaries: [...spec.buckets] },
      })
    }
  }

  /** Stop reporting the observable instruments. */
  close(): void {
    for (const [observable, table] of this.#observed) observable.removeCallback(table.observe)
    this.#observed.length = 0
  }

  #observe(observable: Observable, table: SeriesTable): void {
    observable.addCallback(table.observe)
    this.#observed.push([observable, table])
  }
}
