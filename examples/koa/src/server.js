// The Breakwater example app for Koa: the routes of the example contract (ARCHITECTURE.md), each showing one
// policy. Start it with `pnpm --dir examples/koa start` after `pnpm build` at the root.

import { subscribe } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemoryStore, rateLimit, timeout } from '@breakwater/koa'
import { RedisStore } from '@breakwater/redis'
import Router from '@koa/router'
import { Redis } from 'ioredis'
import Koa from 'koa'

const port = Number(process.env.PORT ?? 3000)

// REDIS_URL set: limits shared by every instance, in Redis. The recommended client settings make a dead Redis
// fail fast (then the limiter's onStoreError policy applies) instead of queueing requests behind it.
const redis = process.env.REDIS_URL
  ? new Redis(process.env.REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  : undefined
if (redis) {
  await redis.connect().catch((/** @type {Error} */ error) => {
    console.error(`cannot connect to REDIS_URL: ${error.message}`)
    process.exit(1)
  })
}
const store = redis ? new RedisStore({ client: redis }) : new MemoryStore()

/** What the handlers really did, for black-box checks. */
const stats = { limitedExecuted: 0, limitedRejected: 0, slowStarted: 0, slowAborted: 0, slowCompleted: 0 }
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
    throw error // the 503 is already out: the middleware drops this failure instead of answering twice
  }
  stats.slowCompleted++
  ctx.body = { waitedMs: ms }
})

router.get('/debug/stats', (ctx) => {
  ctx.body = stats
})

app.use(router.routes()).use(router.allowedMethods())

const server = app.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${port} (store: ${redis ? 'redis' : 'memory'})`)
})

for (const signal of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
  process.once(signal, () => {
    server.close(() => {
      void redis?.quit()
    })
    server.closeIdleConnections()
  })
}

/**
 * The `ms` query parameter of /api/slow: whole milliseconds from 0 to 60 000 (anything else counts as 0).
 * @param {unknown} value
 */
function slowMs(value) {
  const ms = Number(value)
  return Number.isInteger(ms) && ms >= 0 && ms <= 60_000 ? ms : 0
}
