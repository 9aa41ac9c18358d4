// The Breakwater example app for Fastify: the routes of the example contract (ARCHITECTURE.md), each showing
// one policy. Start it with `pnpm --dir examples/fastify start` after `pnpm build` at the root.

import { subscribe } from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { MemoryStore, rateLimit, timeout } from '@breakwater/fastify'
import { RedisStore } from '@breakwater/redis'
import Fastify from 'fastify'
import { Redis } from 'ioredis'

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
  const event = /** @type {import('@breakwater/fastify').RateLimitDecisionEvent} */ (message)
  if (event.policy === 'limited' && event.outcome === 'limited') stats.limitedRejected++
})

const app = Fastify({ trustProxy: trustProxy(process.env.TRUST_PROXY) })

// Only routes with `config.rateLimit` are limited; each gets its own limiter, merged over these defaults.
await app.register(rateLimit, { global: false, store })
// Every route gets a deadline and one AbortSignal (request.breakwater.signal); `config.timeout` overrides it.
await app.register(timeout, { timeoutMs: '10s' })

app.get('/', async (_request, reply) => reply.type('text/plain').send('ok'))

// 5 requests per 10 s per client, then 429 with RateLimit, RateLimit-Policy and Retry-After.
app.get('/api/limited', { config: { rateLimit: { id: 'limited', limit: 5, windowMs: '10s' } } }, async () => {
  stats.limitedExecuted++
  return { ok: true }
})

// GET /api/slow?ms=N: the handler waits N ms on the request's signal, as a database call given the signal would.
// The route's budget is 200 ms: past it the client gets 503 (BW_TIMEOUT) and the wait is cancelled, not left running.
app.get('/api/slow', { config: { timeout: { timeoutMs: 200 } } }, async (request) => {
  const ms = slowMs(/** @type {{ ms?: string }} */ (request.query).ms)
  stats.slowStarted++
  try {
    await sleep(ms, undefined, { signal: request.breakwater?.signal })
  } catch (error) {
    stats.slowAborted++
    throw error // the 503 is already out: the plugin drops this failure instead of answering twice
  }
  stats.slowCompleted++
  return { waitedMs: ms }
})

app.get('/debug/stats', async () => stats)

await app.listen({ host: '127.0.0.1', port })
console.log(`listening on http://127.0.0.1:${port} (store: ${redis ? 'redis' : 'memory'})`)

for (const signal of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
  process.once(signal, async () => {
    await app.close()
    await redis?.quit()
  })
}

/**
 * TRUST_PROXY → Fastify `trustProxy`: unset, "" or "false" trusts no proxy headers; "true" trusts every hop
 * (only behind a proxy that overwrites X-Forwarded-For); a number trusts that many hops; anything else is a
 * comma-separated list of proxy addresses/subnets ("127.0.0.1,10.0.0.0/8").
 * @param {string | undefined} value
 * @returns {boolean | string | ((address: string, hop: number) => boolean)}
 */
function trustProxy(value) {
  if (value === undefined || value === '' || value === 'false') return false
  if (value === 'true') return true
  if (/^\d+$/.test(value)) return (_address, hop) => hop < Number(value)
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
