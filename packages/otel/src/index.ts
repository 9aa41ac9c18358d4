// Public entry of @breakwater/otel: OpenTelemetry metrics and span attributes from Breakwater's channels.

export { instrument } from './instrument.js'
export { COUNTERS, DECISION_BUCKETS, GAUGES, HISTOGRAMS, WAIT_BUCKETS } from './instruments.js'
export type { Instrumentation, InstrumentOptions } from './types.js'
export { SCOPE_NAME, SCOPE_VERSION } from './version.js'
