import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import {
  channels,
  createRateLimiter,
  dependency,
  isInvalidOptionError,
  MemoryRateLimitStore,
  type RateLimitStore,
  type RequestView,
  RetryBudget,
} from '@breakwater/core'
import { type Attributes, type MeterProvider, metrics } from '@opentelemetry/api'
import { afterEach, describe, expect, it } from 'vitest'
import { CHANNEL_HANDLERS } from '../src/channel-map.js'
import {
  COUNTERS,
  GAUGES,
  HISTOGRAMS,
  type Instrumentation,
  instrument,
  SCOPE_NAME,
  SCOPE_VERSION,
} from '../src/index.js'
import { histogramCount, pointsOf, sumOf, type TestMeter, testMeter } from './metrics-sdk.js'

/** The outbound channels whose names are fixed before their policies land (HELPERS.md contract). */
const OUTBOUND_CHANNELS = [
  'breakwater:circuit-breaker:state',
  'breakwater:circuit-breaker:call',
  'breakwater:bulkhead:decision',
  'breakwater:bulkhead:limit',
  'breakwater:dependency:attempt',
  'breakwater:dependency:call',
  'breakwater:rate-limit:refund',
]

/** A plain request view, as an adapter builds one. */
function view(ip = '192.0.2.1'): RequestView {
  return { method: 'GET', path: '/', ip, header: () => undefined, signal: new AbortController().signal }
}

/** A store that is not in-process (as Redis is not), so core times its calls: a MemoryRateLimitStore behind promises. */
function remoteStore(): RateLimitStore {
  const memory = new MemoryRateLimitStore()
  return {
    consume: async (key, rules, cost) => memory.consume(key, rules, cost),
    peek: async (key, rules, cost) => memory.peek(key, rules, cost),
    reset: async (key) => memory.reset(key),
  }
}

let meter: TestMeter | undefined
let instrumentation: Instrumentation | undefined
afterEach(async () => {
  instrumentation?.unsubscribe()
  instrumentation = undefined
  await meter?.shutdown()
  meter = undefined
})

function install(options: Parameters<typeof instrument>[0] = {}): TestMeter {
  meter = testMeter()
  instrumentation = instrument({ meterProvider: meter.meterProvider, ...options })
  return meter
}

describe('channel coverage', () => {
  it('maps every channel core publishes', () => {
    const unmapped = Object.values(channels)
      .map((channel) => String(channel.name))
      .filter((name) => !(name in CHANNEL_HANDLERS))
    expect(unmapped, 'channels in core’s `channels` that @breakwater/otel does not map').toEqual([])
  })

  it('maps the outbound channels by name before they land', () => {
    expect(OUTBOUND_CHANNELS.filter((name) => !(name in CHANNEL_HANDLERS))).toEqual([])
  })

  it('subscribes to every mapped channel and unsubscribes from all of them', () => {
    install()
    const names = Object.keys(CHANNEL_HANDLERS)
    expect([...(instrumentation?.channels ?? [])].sort()).toEqual([...names].sort())
    for (const name of names) expect(diagnostics.channel(name).hasSubscribers, name).toBe(true)
    instrumentation?.unsubscribe()
    instrumentation?.unsubscribe() // idempotent
    for (const name of names) expect(diagnostics.channel(name).hasSubscribers, name).toBe(false)
  })
})

describe('metrics from core’s decisions', () => {
  it('counts 5 allowed and 3 limited requests of a rate limiter, and times the remote store calls', async () => {
    const { collect } = install()
    const limiter = createRateLimiter({ id: 'api', limit: 5, windowMs: 60_000, store: remoteStore() })
    const request = view('198.51.100.7')
    for (let i = 0; i < 8; i++) await limiter.check(request)
    const data = await collect()
    const name = COUNTERS.rateLimitRequests.name
    expect(sumOf(data, name, { 'breakwater.policy': 'api', 'breakwater.outcome': 'allowed' })).toBe(5)
    expect(sumOf(data, name, { 'breakwater.policy': 'api', 'breakwater.outcome': 'limited' })).toBe(3)
    // Allowed requests each asked the store; limited ones may be answered by core's denial cache, untimed.
    expect(histogramCount(data, HISTOGRAMS.rateLimitDuration.name, { 'breakwater.outcome': 'allowed' })).toBe(5)
  })

  it('records no store latency for an in-process store, which core does not time', async () => {
    const { collect } = install()
    const limiter = createRateLimiter({ id: 'local', limit: 5, windowMs: 60_000 })
    for (let i = 0; i < 3; i++) await limiter.check(view())
    const data = await collect()
    expect(sumOf(data, COUNTERS.rateLimitRequests.name, { 'breakwater.policy': 'local' })).toBe(3)
    expect(histogramCount(data, HISTOGRAMS.rateLimitDuration.name, { 'breakwater.policy': 'local' })).toBe(0)
  })

  it('never records a client key, IP or key hash as an attribute', async () => {
    const { collect } = install({ httpRoute: true })
    const limiter = createRateLimiter({ id: 'api', limit: 1, windowMs: 60_000 })
    await limiter.check(view('203.0.113.9'))
    await limiter.check(view('203.0.113.9'))
    const serialized = JSON.stringify((await collect()).flatMap((metric) => metric.dataPoints.map((p) => p.attributes)))
    expect(serialized).not.toContain('203.0.113.9')
    expect(serialized).toContain('"http.route":"/"') // opted in: the route pattern, not the client
  })

  it('declares seconds and {request} units, and bucket advice on every histogram', async () => {
    const { collect } = install()
    const limiter = createRateLimiter({ id: 'units', limit: 1, windowMs: 60_000, store: remoteStore() })
    await limiter.check(view())
    const data = await collect()
    const counter = data.find((m) => m.descriptor.name === COUNTERS.rateLimitRequests.name)
    const histogram = data.find((m) => m.descriptor.name === HISTOGRAMS.rateLimitDuration.name)
    expect(counter?.descriptor.unit).toBe('{request}')
    expect(histogram?.descriptor.unit).toBe('s')
    const point = histogram?.dataPoints[0]?.value as { buckets: { boundaries: number[] } }
    expect(point.buckets.boundaries).toEqual(HISTOGRAMS.rateLimitDuration.buckets)
    for (const spec of [...Object.values(COUNTERS), ...Object.values(GAUGES), ...Object.values(HISTOGRAMS)]) {
      expect(spec.name, spec.name).toMatch(/^breakwater\.[a-z_.]+$/)
      expect(spec.name).not.toBe('http.server.request.duration')
    }
  })

  it('creates its instruments once, on the scope of the package name and version', async () => {
    const { scopes } = install()
    const limiter = createRateLimiter({ id: 'scope', limit: 1, windowMs: 60_000 })
    for (let i = 0; i < 3; i++) await limiter.check(view())
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    const collected = await scopes()
    expect(collected.map((s) => s.scope)).toEqual([`${pkg.name}@${pkg.version}`])
    const names = collected[0]?.metrics ?? []
    expect(names.filter((n) => n === COUNTERS.rateLimitRequests.name)).toHaveLength(1)
    expect(new Set(names).size).toBe(names.length)
    expect([SCOPE_NAME, SCOPE_VERSION]).toEqual([pkg.name, pkg.version])
  })
})

describe('outbound channels, mapped ahead of their policies', () => {
  const send = (name: string, message: object) => diagnostics.channel(name).publish(message)

  it('counts breaker transitions and reports the current state as a 0/1 gauge per state', async () => {
    const { collect } = install()
    send('breakwater:circuit-breaker:state', {
      policy: 'inventory',
      from: 'closed',
      to: 'open',
      reason: 'consecutive_failures',
    })
    send('breakwater:circuit-breaker:state', {
      policy: 'inventory',
      from: 'open',
      to: 'half_open',
      reason: 'open_elapsed',
    })
    send('breakwater:circuit-breaker:state', {
      policy: 'inventory',
      from: 'half_open',
      to: 'open',
      reason: 'probe_failed',
    })
    send('breakwater:circuit-breaker:call', {
      policy: 'inventory',
      outcome: 'rejected',
      slow: false,
      durationSeconds: 0,
    })
    const data = await collect()
    const transitions = COUNTERS.circuitBreakerTransitions.name
    expect(
      sumOf(data, transitions, { 'breakwater.policy': 'inventory', 'breakwater.circuit_breaker.state': 'open' }),
    ).toBe(2)
    const state = (s: string) =>
      sumOf(data, GAUGES.circuitBreakerState.name, {
        'breakwater.policy': 'inventory',
        'breakwater.circuit_breaker.state': s,
      })
    expect([state('closed'), state('open'), state('half_open'), state('isolated')]).toEqual([0, 1, 0, 0])
    expect(sumOf(data, COUNTERS.circuitBreakerCalls.name, { 'breakwater.outcome': 'rejected' })).toBe(1)
  })

  it('counts bulkhead decisions, queue waits and limits', async () => {
    const { collect } = install()
    send('breakwater:bulkhead:decision', { policy: 'inventory', outcome: 'admitted', queuedSeconds: 0.02 })
    send('breakwater:bulkhead:decision', { policy: 'inventory', outcome: 'rejected', reason: 'full', queuedSeconds: 0 })
    send('breakwater:bulkhead:limit', { policy: 'inventory', limit: 6, inFlight: 5, queued: 2 })
    const data = await collect()
    const requests = COUNTERS.bulkheadRequests.name
    expect(sumOf(data, requests, { 'breakwater.outcome': 'rejected', 'breakwater.reason': 'full' })).toBe(1)
    expect(histogramCount(data, HISTOGRAMS.bulkheadQueueDuration.name, { 'breakwater.outcome': 'admitted' })).toBe(1)
    expect(sumOf(data, GAUGES.bulkheadLimit.name, { 'breakwater.policy': 'inventory' })).toBe(6)
    expect(sumOf(data, GAUGES.bulkheadQueued.name, { 'breakwater.policy': 'inventory' })).toBe(2)
  })

  it('tells first attempts from retries and single-attempt calls from retried ones', async () => {
    const { collect } = install()
    send('breakwater:dependency:attempt', {
      policy: 'inventory',
      attempt: 1,
      retry: false,
      outcome: 'failure',
      durationSeconds: 0.1,
    })
    send('breakwater:dependency:attempt', {
      policy: 'inventory',
      attempt: 2,
      retry: true,
      outcome: 'timed_out',
      durationSeconds: 0.3,
    })
    send('breakwater:dependency:attempt', {
      policy: 'inventory',
      attempt: 3,
      retry: true,
      outcome: 'success',
      durationSeconds: 0.05,
    })
    send('breakwater:dependency:call', { policy: 'inventory', outcome: 'success', attempts: 3, durationSeconds: 0.5 })
    send('breakwater:rate-limit:refund', { policy: 'api', outcome: 'refunded' })
    const data = await collect()
    const attempts = COUNTERS.dependencyAttempts.name
    expect(sumOf(data, attempts, { 'breakwater.retry': false })).toBe(1)
    expect(sumOf(data, attempts, { 'breakwater.retry': true })).toBe(2)
    expect(
      sumOf(data, COUNTERS.dependencyCalls.name, { 'breakwater.retried': true, 'breakwater.outcome': 'success' }),
    ).toBe(1)
    expect(histogramCount(data, HISTOGRAMS.dependencyAttemptDuration.name)).toBe(3)
    expect(sumOf(data, COUNTERS.rateLimitRefunds.name, { 'breakwater.outcome': 'refunded' })).toBe(1)
  })

  it('counts retries, a spent budget, hedges and their winners from a real dependency', async () => {
    const { collect } = install()
    const reset = () => Object.assign(new Error('reset'), { code: 'ECONNRESET' })
    const budget = new RetryBudget({ ratio: 0, perSecond: 1 })
    const flaky = dependency('flaky', { retry: { attempts: 3, baseMs: 1, capMs: 1, budget } })
    await flaky.execute(() => Promise.reject(reset())).catch(() => {}) // one retry, then the budget is spent
    const slow = dependency('slow', { hedge: { delayMs: 5, budget: false } })
    let n = 0
    const answer = await slow.execute(({ signal }) =>
      ++n === 1
        ? new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
        : Promise.resolve('hedge'),
    )
    expect(answer).toBe('hedge')
    const data = await collect()
    expect(
      sumOf(data, COUNTERS.retryScheduled.name, { 'breakwater.policy': 'flaky', 'breakwater.reason': 'error' }),
    ).toBe(1)
    expect(sumOf(data, COUNTERS.retryBudgetExhausted.name, { 'breakwater.retry.kind': 'retry' })).toBe(1)
    expect(
      sumOf(data, COUNTERS.dependencyAttempts.name, { 'breakwater.policy': 'flaky', 'breakwater.retry': true }),
    ).toBe(1)
    expect(sumOf(data, COUNTERS.hedgeLaunched.name, { 'breakwater.hedge.trigger': 'delay' })).toBe(1)
    expect(sumOf(data, COUNTERS.hedgeSettled.name, { 'breakwater.outcome': 'hedge' })).toBe(1)
  })

  it('counts dry-run decisions apart from enforced ones', async () => {
    const { collect } = install()
    const base = { policy: 'api', violated: [], keyHash: 'x', durationSeconds: 0.001, request: undefined }
    send('breakwater:rate-limit:decision', { ...base, outcome: 'limited', dryRun: true })
    send('breakwater:rate-limit:decision', { ...base, outcome: 'limited', dryRun: false })
    const data = await collect()
    const points = pointsOf(data, COUNTERS.rateLimitRequests.name, { 'breakwater.outcome': 'limited' })
    expect(points.map((p) => [p.attributes['breakwater.dry_run'] ?? false, p.value]).sort()).toEqual([
      [false, 1],
      [true, 1],
    ])
  })
})

describe('failures never reach the request', () => {
  it('keeps deciding when the SDK throws from every instrument', async () => {
    const throwing = new Proxy(
      {},
      {
        get: () => () => {
          throw new Error('broken SDK')
        },
      },
    )
    const meterProvider = {
      getMeter: () => ({
        createObservableCounter: () => ({ addCallback: () => {}, removeCallback: () => {} }),
        createObservableGauge: () => ({ addCallback: () => {}, removeCallback: () => {} }),
        createHistogram: () => throwing,
      }),
    } as unknown as MeterProvider
    instrumentation = instrument({ meterProvider })
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown) => uncaught.push(error)
    process.on('uncaughtException', onUncaught)
    try {
      const limiter = createRateLimiter({ id: 'broken', limit: 1, windowMs: 60_000 })
      const first = await limiter.check(view())
      const second = await limiter.check(view())
      expect([first.action, second.action]).toEqual(['continue', 'reject'])
      await new Promise((resolve) => setImmediate(resolve))
      expect(uncaught).toEqual([])
    } finally {
      process.off('uncaughtException', onUncaught)
    }
  })

  it('rejects unknown and mistyped options, naming the key', () => {
    const attempt = (options: Attributes) => {
      try {
        instrument(options as never)
      } catch (error) {
        return isInvalidOptionError(error) ? error.message : 'not an InvalidOptionError'
      }
      return 'no error'
    }
    expect(attempt({ meterprovider: metrics.getMeterProvider() as never })).toContain('"meterprovider"')
    expect(attempt({ httpRoute: 'yes' })).toContain('"httpRoute"')
  })
})
