// The Breakwater example app for Express: the routes of the example contract (ARCHITECTURE.md), each showing
// one policy. Start it with `pnpm --dir examples/express start` after `pnpm build` at the root.

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
  keepRawBody,
  loadShedding,
  MemoryIdempotencyStore,
  MemoryRateLimitStore,
  MethodNotAllowedError,
  rateLimit,
  timeout,
} from '@breakwater/express'
import { logClientErrors, RedisIdempotencyStore, RedisRateLimitStore, redisCheck } from '@breakwater/redis'
import express from 'express'
import { Redis } from 'ioredis'
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
  const event = /** @type {import('@breakwater/express').RateLimitDecisionEvent} */ (message)
  if (event.policy === 'limited' && event.outcome === 'limited') stats.limitedRejected++
})

const app = express()
app.set('trust proxy', trustProxy(process.env.TRUST_PROXY))
// Health probes (GET/HEAD /livez, /readyz, /startupz) come first, so no policy below ever limits, sheds or
// times them out. Details (checks, timings) only for `Authorization: Bearer $HEALTH_TOKEN`.
const healthToken = process.env.HEALTH_TOKEN ?? ''
// HEALTH_CHECK_URL set: readiness also GETs it (a dependency's own health endpoint) and fails while that does not
// answer 2xx within the check's 500 ms. The demo points it at a loopback server and then makes that fail.
const healthCheckUrl = process.env.HEALTH_CHECK_URL ?? ''
/** @type {import('@breakwater/express').HealthCheck[]} */
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
  app.get('/metrics', async (_req, res) => {
    res.type(METRICS_CONTENT_TYPE).send(await renderMetrics())
  })
}

// Every request gets a deadline and one AbortSignal (req.breakwater.signal); routes may set their own budget.
app.use(timeout({ timeoutMs: '10s' }))

app.get('/', (_req, res) => {
  res.type('text/plain').send('ok')
})

// 5 requests per 10 s per client, then 429 with RateLimit, RateLimit-Policy and Retry-After.
app.get('/api/limited', rateLimit({ id: 'limited', limit: 5, windowMs: '10s', store }), (_req, res) => {
  stats.limitedExecuted++
  res.json({ ok: true })
})

// GET /api/slow?ms=N: the handler waits N ms on the request's signal, as a database call given the signal would.
// The route's budget is 200 ms: past it the client gets 503 (BW_TIMEOUT) and the wait is cancelled, not left running.
app.get('/api/slow', timeout({ timeoutMs: 200 }), async (req, res) => {
  const ms = slowMs(req.query.ms)
  stats.slowStarted++
  try {
    await sleep(ms, undefined, { signal: req.breakwater?.signal })
  } catch (error) {
    stats.slowAborted++
    throw error // the 503 is already out (or the client left): errorHandler() below answers nothing, logs nothing
  }
  stats.slowCompleted++
  res.json({ waitedMs: ms })
})

// GET /api/work?ms=N: the handler holds a slot for N ms, as work bounded by a downstream would. At most 4 run at
// once (a static limit, so the demo is predictable; without `limit` it adapts, Gradient2); the rest are shed at
// once with 503 problem+json (BW_OVERLOADED) and a jittered Retry-After, instead of queueing and slowing everyone.
app.get('/api/work', workShedding, async (req, res) => {
  const ms = slowMs(req.query.ms)
  stats.workStarted++
  await sleep(ms, undefined, { signal: req.breakwater?.signal })
  res.json({ workedMs: ms })
})

// POST /api/orders (Idempotency-Key required): the first request with a key executes — 201 with a fresh order id —
// and a retry with the same key gets that stored response again (`Idempotent-Replayed: true`); a duplicate arriving
// while it still runs gets 409 + Retry-After, the same key with another body 422. Keys are scoped per caller (the
// bearer token), in Redis when REDIS_URL is set so every instance agrees. ?delayMs=N holds the handler.
const orderKeys = redis ? new RedisIdempotencyStore({ client: redis }) : new MemoryIdempotencyStore()
app.post(
  '/api/orders',
  // A body limit (100 KB: larger bodies get 413 problem+json), and the raw body kept for a lossless fingerprint.
  express.json({ limit: '100kb', verify: keepRawBody }),
  idempotency({ id: 'orders', store: orderKeys, required: true, scope: (r) => caller(r.header('authorization')) }),
  async (req, res) => {
    await sleep(slowMs(req.query.delayMs), undefined, { signal: req.breakwater?.signal })
    stats.ordersExecuted++
    res.status(201).json({ id: randomUUID(), order: req.body ?? null })
  },
)

app.all('/api/orders', (_req, _res, next) => next(new MethodNotAllowedError(['POST'])))

/**
 * The demo's caller: the bearer token is the user id; no token means anonymous.
 * @param {string | undefined} authorization
 */
function caller(authorization) {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')
  return match ? `user:${match[1]}` : 'anonymous'
}

// GET /api/upstream/inventory and /recommendations when UPSTREAM_URL is set (see upstream.js).
mountUpstream(app, stats)

app.get('/debug/stats', (_req, res) => {
  res.json(stats)
})

// One error handler: problem+json for Breakwater's errors (504 for a handler whose upstream budget ran out) and
// for bad input (invalid JSON 400, too large 413: never Express's HTML page with a stack trace); silent for a
// handler failing with its own request's abort (after its 503, or once the client left).
app.use(errorHandler())

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${port} (store: ${redis ? 'redis' : 'memory'})`)
  probes.health.markStarted() // nothing to warm up: startup is complete once listening
})

// SIGTERM/SIGINT: readiness fails at once; after SHUTDOWN_DRAIN_MS (behind a load balancer: 5 s or more) the
// listener closes; in-flight requests get until SHUTDOWN_TIMEOUT_MS, then their signals abort; Redis is closed last.
subscribe('breakwater:shutdown:phase', (message) => {
  const event = /** @type {import('@breakwater/express').ShutdownPhaseEvent} */ (message)
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
 * TRUST_PROXY → Express `trust proxy`: unset, "" or "false" trusts no proxy headers; "true" trusts every hop
 * (only behind a proxy that overwrites X-Forwarded-For); a number trusts that many hops; anything else is a
 * comma-separated list of proxy addresses/subnets ("loopback", "10.0.0.0/8").
 * @param {string | undefined} value
 * @returns {boolean | number | string}
 */
function trustProxy(value) {
  if (value === undefined || value === '' || value === 'false') return false
  if (value === 'true') return true
  if (/^\d+$/.test(value)) return Number(value)
  return value
}

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
