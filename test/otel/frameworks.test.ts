// @breakwater/otel on Express, Fastify and Koa with the real OpenTelemetry SDK: metric values after real traffic,
// and each decision on the SERVER span of the request it belongs to (AsyncLocalStorage context manager).

import { COUNTERS, HISTOGRAMS, type Instrumentation, instrument } from '@breakwater/otel'
import { context, type MeterProvider } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { histogramCount, sumOf, type TestMeter, testMeter } from '../../packages/otel/test/metrics-sdk.js'
import { until } from '../adapter-conformance/support.js'
import { FRAMEWORKS, SLOW_TIMEOUT_MS, startTracedApp, type TracedApp } from './traced-apps.js'

const spans = new InMemorySpanExporter()
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
const tracer = tracerProvider.getTracer('test-http-server')
const contextManager = new AsyncLocalStorageContextManager()

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable())
})
afterAll(async () => {
  context.disable()
  await tracerProvider.shutdown()
})

const serverSpans = (path: string): ReadableSpan[] =>
  spans.getFinishedSpans().filter((span) => span.attributes['url.path'] === path)

describe.each(FRAMEWORKS)('%s', (framework) => {
  let app: TracedApp
  let meter: TestMeter
  let instrumentation: Instrumentation

  beforeEach(async () => {
    spans.reset()
    meter = testMeter()
    instrumentation = instrument({ meterProvider: meter.meterProvider, tracerProvider, internalSpans: true })
    app = await startTracedApp(framework, tracer)
  })
  afterEach(async () => {
    instrumentation.unsubscribe()
    await app.close()
    await meter.shutdown()
  })

  it('counts 5 allowed and 3 limited requests, and marks each server span with its decision', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) statuses.push((await fetch(`${app.url}/limited`)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
    const data = await meter.collect()
    const name = COUNTERS.rateLimitRequests.name
    expect(sumOf(data, name, { 'breakwater.policy': 'limited', 'breakwater.outcome': 'allowed' })).toBe(5)
    expect(sumOf(data, name, { 'breakwater.policy': 'limited', 'breakwater.outcome': 'limited' })).toBe(3)
    await until(() => serverSpans('/limited').length === 8)
    const outcomes = serverSpans('/limited').map((span) => [
      span.attributes['http.response.status_code'],
      span.attributes['breakwater.rate_limit.outcome'],
      span.attributes['breakwater.rate_limit.policy'],
    ])
    expect(outcomes.filter(([status]) => status === 200)).toEqual(Array(5).fill([200, 'allowed', 'limited']))
    expect(outcomes.filter(([status]) => status === 429)).toEqual(Array(3).fill([429, 'limited', 'limited']))
  })

  it('puts timed_out on the span of each timed-out request, also when another request armed the deadline timer', async () => {
    // Two requests with the same budget share one deadline queue, whose timer the first one armed: the second's
    // outcome is published from that timer and must still land on the second request's span.
    const first = fetch(`${app.url}/slow`)
    await new Promise((resolve) => setTimeout(resolve, 15))
    const second = fetch(`${app.url}/slow`)
    expect([(await first).status, (await second).status]).toEqual([503, 503])
    await until(() => serverSpans('/slow').length === 2)
    for (const span of serverSpans('/slow')) {
      expect(span.attributes).toMatchObject({
        'breakwater.timeout.outcome': 'timed_out',
        'breakwater.timeout.budget': SLOW_TIMEOUT_MS / 1000,
        'http.response.status_code': 503,
      })
    }
    const data = await meter.collect()
    expect(sumOf(data, COUNTERS.timeoutRequests.name, { 'breakwater.outcome': 'timed_out' })).toBe(2)
  })

  it('puts shed, and a queued request’s admission, on the span of the request they belong to', async () => {
    const holding = fetch(`${app.url}/work`) // takes the one permit
    await until(() => serverSpans('/work').length === 0 && app !== undefined)
    await new Promise((resolve) => setTimeout(resolve, 30))
    const queued = fetch(`${app.url}/work`) // waits in the queue (size 1)
    await new Promise((resolve) => setTimeout(resolve, 30))
    const shed = await fetch(`${app.url}/work`) // no permit, queue full
    expect(shed.status).toBe(503)
    app.release() // the holder answers; its release admits the queued one (from the holder's context)
    expect((await holding).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 30))
    app.release()
    expect((await queued).status).toBe(200)
    await until(() => serverSpans('/work').length === 3)
    const byStatus = serverSpans('/work').map((span) => span.attributes)
    const shedSpan = byStatus.find((a) => a['http.response.status_code'] === 503)
    expect(shedSpan).toMatchObject({
      'breakwater.load_shedding.policy': 'work',
      'breakwater.load_shedding.outcome': 'shed',
      'breakwater.load_shedding.reason': 'queue-full',
    })
    const admitted = byStatus.filter((a) => a['http.response.status_code'] === 200)
    expect(admitted.map((a) => a['breakwater.load_shedding.outcome'])).toEqual(['admitted', 'admitted'])
    // Exactly one of them waited, and its wait is on its own span (plus a child span covering the wait).
    const waits = admitted.map((a) => a['breakwater.load_shedding.queue_time']).filter((t) => t !== undefined)
    expect(waits).toHaveLength(1)
    expect(waits[0]).toBeGreaterThan(0.02)
    const queueSpans = spans.getFinishedSpans().filter((span) => span.name === 'breakwater.load_shedding.queue')
    expect(queueSpans).toHaveLength(1)
    const waitedSpan = serverSpans('/work').find(
      (s) => s.attributes['breakwater.load_shedding.queue_time'] !== undefined,
    )
    expect(queueSpans[0]?.parentSpanContext?.spanId).toBe(waitedSpan?.spanContext().spanId)
    const data = await meter.collect()
    const name = COUNTERS.loadSheddingRequests.name
    expect(sumOf(data, name, { 'breakwater.outcome': 'shed', 'breakwater.reason': 'queue-full' })).toBe(1)
    expect(sumOf(data, name, { 'breakwater.outcome': 'admitted' })).toBe(2)
    expect(histogramCount(data, HISTOGRAMS.loadSheddingQueueDuration.name, { 'breakwater.outcome': 'admitted' })).toBe(
      1,
    )
  })
})

describe('a broken SDK', () => {
  it('never changes what a request gets', async () => {
    const broken = new Proxy({} as Record<string, unknown>, {
      get: () => () => {
        throw new Error('broken SDK')
      },
    })
    const meterProvider = {
      getMeter: () => ({
        createObservableCounter: () => ({ addCallback() {}, removeCallback() {} }),
        createObservableGauge: () => ({ addCallback() {}, removeCallback() {} }),
        createHistogram: () => broken,
      }),
    } as unknown as MeterProvider
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    const instrumentation = instrument({ meterProvider, tracerProvider })
    const app = await startTracedApp('fastify', tracer)
    try {
      const statuses: number[] = []
      for (let i = 0; i < 7; i++) statuses.push((await fetch(`${app.url}/limited`)).status)
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429])
      await new Promise((resolve) => setImmediate(resolve))
      expect(uncaught).toEqual([])
    } finally {
      process.off('uncaughtException', onUncaught)
      instrumentation.unsubscribe()
      await app.close()
    }
  })
})
