// Which span an inbound decision belongs to. Core publishes most decisions in the request's own async context,
// but a queued load-shedding request is admitted (or times out) from another request's release or a timer, so
// the span is remembered per request view the first time one of its decisions is seen in the right context.

import { type Context, context, ROOT_CONTEXT, type Span, trace } from '@opentelemetry/api'

// @opentelemetry/core's RPC metadata key (createContextKey is Symbol.for): the HTTP instrumentation stores the
// server span there, so a decision lands on the server span even under a framework instrumentation's child span.
const RPC_METADATA_KEY = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA')

const spans = new WeakMap<object, Span>()

function serverSpanOf(active: Context): Span | undefined {
  const metadata = active.getValue(RPC_METADATA_KEY) as { span?: Span } | undefined
  const span = metadata?.span ?? trace.getSpan(active)
  return span?.isRecording() ? span : undefined
}

/**
 * The recording span of the request `view` belongs to, if any. `inContext: false` for a decision published from
 * another request's context (a queued request admitted by someone else's release): then only a span remembered
 * earlier for this view counts, never the active one.
 */
export function spanOf(view: object | undefined, inContext = true): Span | undefined {
  if (view !== undefined) {
    const known = spans.get(view)
    if (known !== undefined) return known.isRecording() ? known : undefined
  }
  if (!inContext) return undefined
  const active = context.active()
  if (active === ROOT_CONTEXT) return undefined // no context manager, or no span anywhere: nothing to find
  const span = serverSpanOf(active)
  if (span !== undefined && view !== undefined) spans.set(view, span)
  return span
}
