// instrument(): subscribe to every Breakwater channel and turn its messages into metrics and span attributes.

import diagnostics from 'node:diagnostics_channel'
import { InvalidOptionError } from '@breakwater/core'
import { diag, metrics, trace } from '@opentelemetry/api'
import { CHANNEL_HANDLERS, type HandlerContext } from './channel-map.js'
import { Instruments } from './instruments.js'
import type { Instrumentation, InstrumentOptions } from './types.js'
import { SCOPE_NAME, SCOPE_VERSION } from './version.js'

const OPTION_KEYS = new Set([
  'meterProvider',
  'tracerProvider',
  'httpRoute',
  'spanAttributes',
  'spanEvents',
  'internalSpans',
])

/**
 * Subscribe to every Breakwater channel (`breakwater:*`) and record each decision as OpenTelemetry metrics and,
 * for decisions about an inbound request, as `breakwater.*` attributes of its server span. Nothing is recorded
 * before this is called (core builds no event without a subscriber), and an SDK or exporter that throws never
 * reaches a request: each message is handled inside a guard that reports the failure once through `diag`.
 *
 * Defaults: the global meter and tracer providers, span attributes on, span events, internal spans and
 * `http.route` off.
 *
 * @example
 * import { instrument } from '@breakwater/otel'
 * import { MeterProvider } from '@opentelemetry/sdk-metrics'
 * import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
 *
 * const exporter = new PrometheusExporter({ preventServerStart: true })
 * const meterProvider = new MeterProvider({ readers: [exporter] })
 * const instrumentation = instrument({ meterProvider })
 * // … later, e.g. in tests or on shutdown:
 * instrumentation.unsubscribe()
 */
export function instrument(options: InstrumentOptions = {}): Instrumentation {
  const resolved = resolveOptions(options)
  const meter = (resolved.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE_NAME, SCOPE_VERSION)
  const tracer = (resolved.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE_NAME, SCOPE_VERSION)
  const instruments = new Instruments(meter)
  const ctx: HandlerContext = {
    instruments,
    tracer,
    httpRoute: resolved.httpRoute ?? false,
    spanAttributes: resolved.spanAttributes ?? true,
    spanEvents: resolved.spanEvents ?? false,
    internalSpans: resolved.internalSpans ?? false,
  }
  let reported = false
  const subscriptions: Array<[string, (message: unknown) => void]> = []
  for (const [name, handler] of Object.entries(CHANNEL_HANDLERS)) {
    const subscriber = (message: unknown): void => {
      try {
        handler(message, ctx)
      } catch (error) {
        // Node turns a throwing subscriber into an uncaught exception: never let the SDK do that to a request.
        if (!reported) {
          reported = true
          diag.error(`@breakwater/otel: recording ${name} failed (reported once)`, error)
        }
      }
    }
    diagnostics.subscribe(name, subscriber)
    subscriptions.push([name, subscriber])
  }
  let active = true
  return {
    channels: Object.freeze(subscriptions.map(([name]) => name)),
    unsubscribe() {
      if (!active) return
      active = false
      for (const [name, subscriber] of subscriptions) diagnostics.unsubscribe(name, subscriber)
      instruments.close()
    },
  }
}

function resolveOptions(options: InstrumentOptions): InstrumentOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('options', options, 'an object')
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) {
      throw new InvalidOptionError(
        key,
        (options as Record<string, unknown>)[key],
        `a known option (${[...OPTION_KEYS].join(', ')})`,
      )
    }
  }
  for (const key of ['httpRoute', 'spanAttributes', 'spanEvents', 'internalSpans'] as const) {
    const value = options[key]
    if (value !== undefined && typeof value !== 'boolean') throw new InvalidOptionError(key, value, 'a boolean')
  }
  if (options.meterProvider !== undefined && typeof options.meterProvider?.getMeter !== 'function') {
    throw new InvalidOptionError('meterProvider', options.meterProvider, 'a MeterProvider (with getMeter)')
  }
  if (options.tracerProvider !== undefined && typeof options.tracerProvider?.getTracer !== 'function') {
    throw new InvalidOptionError('tracerProvider', options.tracerProvider, 'a TracerProvider (with getTracer)')
  }
  return options
}
