// The Breakwater example app for Koa: the routes of the example contract (ARCHITECTURE.md), each showing one
// policy. Start it with `pnpm --dir examples/koa start` after `pnpm build` at the root.

import { randomUUID } from 'node:crypto'
import { subscribe } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  errorHandler,
  eventLoopDelayCheck,
  gracefulShutdown,
  health,
  heapCheck,
  idempotency,
  loadShedding,
  MemoryIdempotencyStore,
  MemoryRateLimitStore,
  MethodNotAllowedError,
  rateLimit,
  timeout,
} from '@breakwater/koa'
import { logClientErrors, RedisIdempotencyStore, RedisRateLimitStore, redisCheck } from '@breakwater/redis'
import Router from '@koa/router'
import { Redis } from 'ioredis'
import Koa from 'koa'
import { METRICS_CONTENT_TYPE, startMetrics } from './metrics.js'
import { mountUpstream } from './upstream.js'

const port = Number(process.env.PORT ?? 3000)
// OTEL=prometheus: OpenTelemetry metrics of every policy, served at GET /metrics (see metrics.js).
const renderMetrics = await startMetrics()

// REDIS_URL set: limits shared by every instance, in Redis. The recommended client settings make a dead Redis
// fail fast (then the limiter's onStoreError policy applies) instead of queueing requests behind it.
const redis = process.env.REDIS_URL
  ? new Redis(process.env.REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  : undefined
if (redis) {
  // Every ioredis client needs an `error` listener: without one, each failed reconnect during an outage prints
  // "Unhandled error event" with a stack. This one logs a line when Redis goes away and one when it is back.
  logClientErrors(redis)
  await redis.connect().catch((/** @type {Error} */ error) => {
    console.error(`cannot connect to REDIS_URL: ${error.message}`)
    process.exit(1)
  })
}
const store = redis ? new RedisRateLimitStore({ client: redis }) : new MemoryRateLimitStore()

/** What the handlers really did, for black-box checks. */
const stats = {
  ordersExecuted: 0,
  limitedExecuted: 0,
  limitedRejected: 0,
  slowStarted: 0,
  slowAborted: 0,
  slowCompleted: 0,
  workStarted: 0,
}
// Rejected requests never reach a handler: count them from the limiter's decision events.
subscribe('breakwater:rate-limit:decision', (message) => {
  const event = /** @type {import('@breakwater/koa').RateLimitDecisionEvent} */ (message)
  if (event.policy === 'limited' && event.outcome === 'limited') stats.limitedRejected++
})

const app = new Koa()
// TRUST_PROXY: unset, "" or "false" trusts no proxy headers; "true" trusts X-Forwarded-For (only behind a
// proxy that overwrites it); a number N also sets `maxIpsCount`, reading at most the last N addresses.
const trust = process.env.TRUST_PROXY ?? ''
if (trust !== '' && trust !== 'false') {
  if (trust !== 'true' && !/^\d+$/.test(trust)) {
    console.error(`TRUST_PROXY for Koa is "true" or a number of hops, got ${JSON.stringify(trust)}`)
    process.exit(1)
  }
  app.proxy = true
  if (trust !== 'true') app.maxIpsCount = Number(trust)
}

// Health probes (GET/HEAD /livez, /readyz, /startupz) come first, so no policy below ever limits, sheds or
// times them out. Details (checks, timings) only for `Authorization: Bearer $HEALTH_TOKEN`.
const healthToken = process.env.HEALTH_TOKEN ?? ''
// HEALTH_CHECK_URL set: readiness also GETs it (a dependency's own health endpoint) and fails while that does not
// answer 2xx within the check's 500 ms. The demo points it at a loopback server and then makes that fail.
const healthCheckUrl = process.env.HEALTH_CHECK_URL ?? ''
/** @type {import('@breakwater/koa').HealthCheck[]} */
const dependencyChecks = healthCheckUrl
  ? [
      {
        name: 'dependency',
        async check(/** @type {AbortSignal} */ signal) {
          const response = await fetch(healthCheckUrl, { signal })
          await response.body?.cancel()
          if (!response.ok) throw new Error(`${healthCheckUrl} answered ${response.status}`)
        },
      },
    ]
  : []
// The /api/work load shedder (defined here so readiness can report its overload state).
const workShedding = loadShedding({ id: 'work', limit: 4 })
const probes = health({
  // Overload shows in /readyz as `warn` (still 200): shedding one demo route should not pull the instance.
  overload: workShedding,
  overloadStatus: 'warn',
  checks: [...(redis ? [redisCheck(redis)] : []), ...dependencyChecks, eventLoopDelayCheck(), heapCheck()],
  authorize: (request) => healthToken !== '' && request.header('authorization') === `Bearer ${healthToken}`,
})
app.use(probes)
if (renderMetrics) {
  app.use(async (ctx, next) => {
    if (ctx.method !== 'GET' || ctx.path !== '/metrics') return next()
    ctx.type = METRICS_CONTENT_TYPE
    ctx.body = await renderMetrics()
  })
}

// One error handler, outermost: problem+json for Breakwater's errors and for bad input (invalid JSON 400, too
// large 413, unknown method 405); silent for a handler failing with its own request's abort.
app.use(errorHandler())
// Every request gets a deadline and one AbortSignal (ctx.breakwater.signal); routes may set their own budget.
app.use(timeout({ timeoutMs: '10s' }))

const router = new Router()

router.get('/', (ctx) => {
  ctx.body = 'ok'
})

// 5 requests per 10 s per client, then 429 with RateLimit, RateLimit-Policy and Retry-After.
router.get('/api/limited', rateLimit({ id: 'limited', limit: 5, windowMs: '10s', store }), (ctx) => {
  stats.limitedExecuted++
  ctx.body = { ok: true }
})

// GET /api/slow?ms=N: the handler waits N ms on the request's signal, as a database call given the signal would.
// The route's budget is 200 ms: past it the client gets 503 (BW_TIMEOUT) and the wait is cancelled, not left running.
router.get('/api/slow', timeout({ timeoutMs: 200 }), async (ctx) => {
  const ms = slowMs(ctx.query.ms)
  stats.slowStarted++
  try {
    await sleep(ms, undefined, { signal: ctx.breakwater?.signal })
  } catch (error) {
    stats.slowAborted++
    throw error // the 503 is already out (or the client left): the middleware drops it, answers and logs nothing
  }
  stats.slowCompleted++
  ctx.body = { waitedMs: ms }
})

// GET /api/work?ms=N: the handler holds a slot for N ms, as work bounded by a downstream would. At most 4 run at
// once (a static limit, so the demo is predictable; without `limit` it adapts, Gradient2); the rest are shed at
// once with 503 problem+json (BW_OVERLOADED) and a jittered Retry-After, instead of queueing and slowing everyone.
router.get('/api/work', workShedding, async (ctx) => {
  const ms = slowMs(ctx.query.ms)
  stats.workStarted++
  await sleep(ms, undefined, { signal: ctx.breakwater?.signal })
  ctx.body = { workedMs: ms }
})

// POST /api/orders (Idempotency-Key required): the first request with a key executes — 201 with a fresh order id —
// and a retry with the same key gets that stored response again (`Idempotent-Replayed: true`); a duplicate arriving
// while it still runs gets 409 + Retry-After, the same key with another body 422. Keys are scoped per caller (the
// bearer token), in Redis when REDIS_URL is set so every instance agrees. ?delayMs=N holds the handler.
const orderKeys = redis ? new RedisIdempotencyStore({ client: redis }) : new MemoryIdempotencyStore()
router.post(
  '/api/orders',
  jsonBody,
  idempotency({ id: 'orders', store: orderKeys, required: true, scope: (r) => caller(r.header('authorization')) }),
  async (ctx) => {
    await sleep(slowMs(ctx.query.delayMs), undefined, { signal: ctx.breakwater?.signal })
    stats.ordersExecuted++
    ctx.status = 201
    ctx.body = { id: randomUUID(), order: /** @type {{ body?: unknown }} */ (ctx.request).body ?? null }
  },
)

/**
 * The demo's caller: the bearer token is the user id; no token means anonymous.
 * @param {string | undefined} authorization
 */
function caller(authorization) {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')
  return match ? `user:${match[1]}` : 'anonymous'
}

/** Largest JSON body read (as Express's and Fastify's limits in their examples); larger ones get 413. */
const BODY_LIMIT = 100 * 1024

/**
 * Koa has no body parser built in: read a JSON body into `ctx.request.body` and its text into `rawBody`, as
 * koa-bodyparser would (the idempotency fingerprint reads both there). Bounded: a body over BODY_LIMIT is
 * refused with 413 before or while it is read, never buffered whole.
 * @param {import('koa').Context} ctx
 * @param {import('koa').Next} next
 */
async function jsonBody(ctx, next) {
  if (ctx.is('application/json')) {
    if (Number(ctx.get('content-length')) > BODY_LIMIT) ctx.throw(413, 'Request body is too large')
    const chunks = []
    let size = 0
    for await (const chunk of ctx.req) {
      size += /** @type {Buffer} */ (chunk).length
      if (size > BODY_LIMIT) ctx.throw(413, 'Request body is too large')
      chunks.push(/** @type {Buffer} */ (chunk))
    }
    const request = /** @type {{ body?: unknown, rawBody?: string }} */ (ctx.request)
    request.rawBody = Buffer.concat(chunks).toString('utf8')
    try {
      request.body = JSON.parse(request.rawBody || 'null')
    } catch {
      ctx.throw(400, 'Invalid JSON body')
    }
  }
  await next()
}

// GET /api/upstream/inventory and /recommendations when UPSTREAM_URL is set (see upstream.js).
mountUpstream(router, stats)

router.get('/debug/stats', (ctx) => {
  ctx.body = stats
})

// Unknown methods on a route: 405 problem+json with Allow (the router alone answers 501 plain text to methods no
// route uses, and 405 without a body to the others).
app.use(async (ctx, next) => {
  await next()
  const allow = ctx.response.get('Allow')
  if ((ctx.status !== 405 && ctx.status !== 501) || allow === '') return
  ctx.remove('Allow') // the problem's own Allow replaces the router's
  throw new MethodNotAllowedError(allow.split(/\s*,\s*/))
})
app.use(router.routes()).use(router.allowedMethods())

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${port} (store: ${redis ? 'redis' : 'memory'})`)
  probes.health.markStarted() // nothing to warm up: startup is complete once listening
})

// SIGTERM/SIGINT: readiness fails at once; after SHUTDOWN_DRAIN_MS (behind a load balancer: 5 s or more) the
// listener closes; in-flight requests get until SHUTDOWN_TIMEOUT_MS, then their signals abort; Redis is closed last.
subscribe('breakwater:shutdown:phase', (message) => {
  const event = /** @type {import('@breakwater/koa').ShutdownPhaseEvent} */ (message)
  console.log(
    `shutdown: ${event.phase} after ${event.elapsedSeconds.toFixed(2)} s${event.exitCode === undefined ? '' : ` (exit ${event.exitCode})`}`,
  )
})
gracefulShutdown(server, {
  drainDelayMs: envMs('SHUTDOWN_DRAIN_MS', 1_000),
  timeoutMs: envMs('SHUTDOWN_TIMEOUT_MS', 10_000),
  hooks: redis ? [{ name: 'redis', run: () => redis.quit() }] : [],
})

/**
 * The `ms` query parameter of /api/slow: whole milliseconds from 0 to 60 000 (anything else counts as 0).
 * @param {unknown} value
 */
function slowMs(value) {
  const ms = Number(value)
  return Number.isInteger(ms) && ms >= 0 && ms <= 60_000 ? ms : 0
}

/**
 * A duration in ms from the environment, or `fallback` when unset.
 * @param {string} name
 * @param {number} fallback
 */
function envMs(name, fallback) {
  const value = process.env[name]
  return value === undefined || value === '' ? fallback : Number(value)
}
