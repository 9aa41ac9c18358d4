// Public types of @breakwater/otel.

import type { MeterProvider, TracerProvider } from '@opentelemetry/api'

/** Options of {@link instrument}. Every key is optional; unknown keys are errors naming the key. */
export interface InstrumentOptions {
  /** Where the metrics go. Default: the global meter provider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider
  /**
   * Where the optional internal spans go (see `internalSpans`). Default: the global tracer provider. Decisions
   * themselves never create spans: they become attributes of the active server span.
   */
  tracerProvider?: TracerProvider
  /**
   * Add `http.route` (the route pattern the framework matched, e.g. `/orders/:id`) to the metrics of inbound
   * decisions. Off by default: it multiplies every series by the number of routes. Never the raw URL path.
   * Default `false`.
   */
  httpRoute?: boolean
  /** Put each inbound decision on the active server span as attributes (`breakwater.*`). Default `true`. */
  spanAttributes?: boolean
  /** Also add one span event per inbound decision (`breakwater.rate_limit.decision`, …). Default `false`. */
  spanEvents?: boolean
  /**
   * Record a child span of the server span for real waiting, from the event's own timing (no timers): a
   * load-shedding or bulkhead queue wait. Default `false`.
   */
  internalSpans?: boolean
}

/** What {@link instrument} returns: call `unsubscribe()` to stop (idempotent). */
export interface Instrumentation {
  /** Unsubscribe from every channel and stop reporting the observable instruments. Safe to call twice. */
  unsubscribe(): void
  /** The channel names this instrumentation subscribed to. */
  readonly channels: readonly string[]
}
