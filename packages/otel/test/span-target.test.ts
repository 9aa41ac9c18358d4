import diagnostics from 'node:diagnostics_channel'
import { context, SpanKind, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { instrument } from '../src/index.js'
import { testMeter } from './metrics-sdk.js'

const spans = new InMemorySpanExporter()
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
const tracer = tracerProvider.getTracer('test')
const contextManager = new AsyncLocalStorageContextManager()
beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable())
})
afterAll(() => {
  context.disable()
})

// What @opentelemetry/instrumentation-http stores (via @opentelemetry/core's setRPCMetadata) for the server span.
const RPC_METADATA_KEY = Symbol.for('OpenTelemetry SDK Context Key RPC_METADATA')

it('puts a decision on the HTTP server span, not on a framework middleware span active under it', () => {
  const meter = testMeter()
  const instrumentation = instrument({ meterProvider: meter.meterProvider })
  const server = tracer.startSpan('GET /orders', { kind: SpanKind.SERVER })
  const withServer = trace.setSpan(context.active(), server).setValue(RPC_METADATA_KEY, { type: 'http', span: server })
  const middleware = tracer.startSpan('middleware - rateLimit', {}, withServer)
  context.with(trace.setSpan(withServer, middleware), () => {
    diagnostics.channel('breakwater:rate-limit:decision').publish({
      policy: 'api',
      outcome: 'limited',
      violated: ['default'],
      keyHash: 'x',
      durationSeconds: 0.001,
      request: { method: 'GET', path: '/orders', ip: undefined, header: () => undefined, signal: AbortSignal.abort() },
    })
  })
  middleware.end()
  server.end()
  instrumentation.unsubscribe()
  const [middlewareSpan, serverSpan] = spans.getFinishedSpans()
  expect(serverSpan?.attributes).toMatchObject({
    'breakwater.rate_limit.policy': 'api',
    'breakwater.rate_limit.outcome': 'limited',
  })
  expect(middlewareSpan?.attributes['breakwater.rate_limit.outcome']).toBeUndefined()
})
