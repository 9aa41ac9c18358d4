// Which span an inbound decision belongs to. Core publishes most decisions in the request's own async context,
// but a queued load-shedding request is admitted (or times out) from another request's release or a timer, so
// the span is remembered per request view the first time one of its decisions is seen in the right context.

import { type Context, context, type Span, trace } from '@opentelemetry/api'

// @opentelemetry/core's RPC metadata key (createContextKey is Symbol.for): the HTTP instrumentation stores the
// server span there, so a decision lands on the server span even under a framework instrumentation's child span.
const RPC_METADATA_KEY = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA')

const spans = new WeakMap<object, Span | null>()

function serverSpanOf(active: Context): Span | undefined {
  const metadata = active.getValue(RPC_METADATA_KEY) as { span?: Span } | undefined
  const span = metadata?.span ?? trace.getSpan(active)
  return span?.isRecording() ? span : undefined
}

/** The recording span of the request `view` belongs to, if any. */
export function spanOf(view: object | undefined): Span | undefined {
  if (view === undefined) return serverSpanOf(context.active())
  const known = spans.get(view)
  if (known !== undefined) return known === null ? undefined : known.isRecording() ? known : undefined
  const span = serverSpanOf(context.active())
  spans.set(view, span ?? null)
  return span
}
