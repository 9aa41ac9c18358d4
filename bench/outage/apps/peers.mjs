// The outage's comparison apps: `node bench/outage/apps/peers.mjs <none|cockatiel|opossum>`. The same three
// outbound routes as the example apps (GET /api/upstream/inventory, /recommendations, POST /api/upstream/orders,
// answering `{ source, data }`), on Fastify, protected the way a user would assemble it today:
// - none: plain fetch with a generous 10 s timeout, nothing else;
// - cockatiel: @fastify/under-pressure + cockatiel 3.2 wrap(retry, breaker, bulkhead, timeout), fallback on
//   recommendations — the example contract's settings, as far as cockatiel has them;
// - opossum: @fastify/under-pressure + opossum 9 (breaker, timeout, capacity) inside p-retry 7, fallback on
//   recommendations.
// Neither peer has a stale-if-error cache: inventory fails when the upstream does. GET /debug/outage reports the
// inventory breaker's state and how often it opened.

import Fastify from 'fastify'
import { exitOnSignal, ready, unknownVariant, variantName } from '../../servers/common.mjs'

const baseUrl = process.env.UPSTREAM_URL
if (!baseUrl) throw new Error('UPSTREAM_URL is not set')
const port = Number(process.env.PORT ?? 0)

/** One upstream call: JSON on 2xx/4xx; a 5xx or 429 is an error carrying its status. */
async function call(path, signal, init = {}) {
  const response = await fetch(`${baseUrl}${path}`, { ...init, signal })
  if (response.status >= 500 || response.status === 429) {
    await response.body?.cancel()
    throw Object.assign(new Error(`upstream answered ${response.status}`), { upstreamStatus: response.status })
  }
  return { status: response.status, body: await response.json() }
}

const FALLBACK = { items: [] }
const ordersInit = (body, key) => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
  body: JSON.stringify(body ?? {}),
})

/**
 * Each variant: the three calls, plus its inventory breaker's state.
 * @type {Record<string, () => Promise<{ inventory: (q: string) => Promise<unknown>, recommendations: () => Promise<unknown>, orders: (body: unknown, key?: string) => Promise<unknown>, breaker: () => { state: string, opens: number, bulkheadLimit?: number }, plugin?: [unknown, unknown] }>>}
 */
const VARIANTS = {
  none: async () => {
    const generous = () => AbortSignal.timeout(10_000)
    return {
      inventory: (query) => call(`/inventory${query}`, generous()),
      recommendations: () => call('/recommendations', generous()),
      orders: (body, key) => call('/orders', generous(), ordersInit(body, key)),
      breaker: () => ({ state: 'none', opens: 0 }),
    }
  },

  cockatiel: async () => {
    const c = await import('cockatiel')
    let opens = 0
    const breakerFor = () => {
      const breaker = c.circuitBreaker(c.handleAll, { halfOpenAfter: 1000, breaker: new c.ConsecutiveBreaker(5) })
      return breaker
    }
    const inventoryBreaker = breakerFor()
    inventoryBreaker.onBreak(() => opens++)
    const retry = () =>
      c.retry(c.handleAll, { maxAttempts: 2, backoff: new c.ExponentialBackoff({ initialDelay: 20, maxDelay: 200 }) })
    const attempt = () => c.timeout(300, c.TimeoutStrategy.Aggressive)
    const inventory = c.wrap(retry(), inventoryBreaker, c.bulkhead(8, 8), attempt())
    const recommendations = c.wrap(
      c.fallback(c.handleAll, () => FALLBACK),
      breakerFor(),
      c.bulkhead(4),
      attempt(),
    )
    const orders = c.wrap(retry(), breakerFor(), c.bulkhead(8, 8), attempt())
    const names = {
      [c.CircuitState.Closed]: 'closed',
      [c.CircuitState.Open]: 'open',
      [c.CircuitState.HalfOpen]: 'half-open',
      [c.CircuitState.Isolated]: 'open',
    }
    return {
      inventory: (query) => inventory.execute(({ signal }) => call(`/inventory${query}`, signal)),
      recommendations: () => recommendations.execute(({ signal }) => call('/recommendations', signal)),
      orders: (body, key) => orders.execute(({ signal }) => call('/orders', signal, ordersInit(body, key))),
      breaker: () => ({ state: names[inventoryBreaker.state] ?? 'unknown', opens, bulkheadLimit: 8 }),
      plugin: await underPressure(),
    }
  },

  opossum: async () => {
    const { default: CircuitBreaker } = await import('opossum')
    const { default: pRetry } = await import('p-retry')
    // opossum's timeout rejects the call but cannot cancel the fetch (one signal per breaker at most): the
    // request keeps its socket until the upstream answers, as in most opossum set-ups.
    const options = { timeout: 300, resetTimeout: 1000, errorThresholdPercentage: 50, volumeThreshold: 5 }
    const inventoryBreaker = new CircuitBreaker((path) => call(path, undefined), { ...options, capacity: 8 })
    const recommendationsBreaker = new CircuitBreaker(() => call('/recommendations', undefined), {
      ...options,
      capacity: 4,
    })
    recommendationsBreaker.fallback(() => FALLBACK)
    const ordersBreaker = new CircuitBreaker((body, key) => call('/orders', undefined, ordersInit(body, key)), {
      ...options,
      capacity: 8,
    })
    let opens = 0
    inventoryBreaker.on('open', () => opens++)
    const retried = (fn) => pRetry(fn, { retries: 2, minTimeout: 20, maxTimeout: 200, randomize: true })
    return {
      inventory: (query) => retried(() => inventoryBreaker.fire(`/inventory${query}`)),
      recommendations: () => recommendationsBreaker.fire(),
      orders: (body, key) => retried(() => ordersBreaker.fire(body, key)),
      breaker: () => ({
        state: inventoryBreaker.opened ? 'open' : inventoryBreaker.halfOpen ? 'half-open' : 'closed',
        opens,
        bulkheadLimit: 8,
      }),
      plugin: await underPressure(),
    }
  },
}

/** @fastify/under-pressure with the thresholds of its README (as in bench/overload). */
async function underPressure() {
  const plugin = (await import('@fastify/under-pressure')).default
  return [
    plugin,
    { maxEventLoopDelay: 1000, maxHeapUsedBytes: 100_000_000, maxRssBytes: 100_000_000, maxEventLoopUtilization: 0.98 },
  ]
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('outage', name, Object.keys(VARIANTS))
const variant = await setup()

const app = Fastify({ logger: false })
if (variant.plugin) await app.register(variant.plugin[0], variant.plugin[1])

/** A failed call as a problem answer: 504 for a timeout, 503 for an open breaker or full bulkhead, else 502. */
function failure(reply, error) {
  const text = `${error?.name ?? ''} ${error?.code ?? ''} ${error?.message ?? ''}`
  const status = /timeout|timed out|ETIMEDOUT/i.test(text)
    ? 504
    : /open|broken|bulkhead|ESEMLOCKED|isolated/i.test(text)
      ? 503
      : 502
  return reply
    .code(status)
    .type('application/problem+json')
    .send({ status, title: error?.message ?? 'failed' })
}

app.get('/', async () => 'ok')
app.get('/debug/outage', async () => variant.breaker())
app.get('/api/upstream/inventory', async (request, reply) => {
  const query = request.url.indexOf('?')
  try {
    const { body } = await variant.inventory(query === -1 ? '' : request.url.slice(query))
    return { source: 'upstream', data: body }
  } catch (error) {
    return failure(reply, error)
  }
})
app.get('/api/upstream/recommendations', async (_request, reply) => {
  try {
    const result = await variant.recommendations()
    return result === FALLBACK ? { source: 'fallback', data: FALLBACK } : { source: 'upstream', data: result.body }
  } catch (error) {
    return failure(reply, error)
  }
})
app.post('/api/upstream/orders', async (request, reply) => {
  try {
    const key = request.headers['idempotency-key']
    const { status, body } = await variant.orders(request.body, typeof key === 'string' ? key : undefined)
    return reply.code(status).send(body)
  } catch (error) {
    return failure(reply, error)
  }
})

await app.listen({ port, host: '127.0.0.1' })
ready(app.server.address().port)
exitOnSignal()
