// The rate limiter's store failure policies through every adapter, over real sockets, while Redis is down:
// `fail-closed` answers 503 problem+json at once, `{ fallback }` keeps limiting from process memory (a client
// still gets its 429), and both decide from Redis again once it is back.

import { MemoryRateLimitStore } from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FRAMEWORKS, startApp, type TestApp } from '../adapter-conformance/apps.js'
import { type RedisServer, sleep, startRedis, untilReady } from '../support/redis-server.js'

const STORE_TIMEOUT_MS = 250
const SLACK_MS = 250
const LIMIT = 3

describe.each(FRAMEWORKS)('%s rate limits while Redis is down', (framework) => {
  let server: RedisServer
  let client: Redis
  let app: TestApp

  beforeAll(async () => {
    server = await startRedis()
    client = new Redis(server.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })
    client.on('error', () => {}) // connection errors during the outage are expected
    await untilReady(client)
    const rule = { limit: LIMIT, windowMs: '1m', storeTimeoutMs: STORE_TIMEOUT_MS }
    app = await startApp(framework, {
      routes: [
        {
          path: '/closed',
          limits: [{ ...rule, id: 'closed', store: new RedisRateLimitStore({ client }), onStoreError: 'fail-closed' }],
        },
        {
          path: '/fallback',
          limits: [
            {
              ...rule,
              id: 'fallback',
              store: new RedisRateLimitStore({ client }),
              onStoreError: { fallback: new MemoryRateLimitStore() },
            },
          ],
        },
      ],
    })
  })

  afterAll(async () => {
    await app?.close()
    client?.disconnect()
    await server?.stop()
  })

  const get = async (path: string) => {
    const started = performance.now()
    const response = await fetch(`${app.url}${path}`)
    return {
      status: response.status,
      ratelimit: response.headers.get('ratelimit'),
      type: response.headers.get('content-type'),
      body: await response.text(),
      ms: performance.now() - started,
    }
  }

  it('fail-closed answers 503 BW_STORE_UNAVAILABLE within the store timeout; { fallback } still limits from memory', async () => {
    expect((await get('/closed')).ratelimit).toMatch(new RegExp(`^"default";r=${LIMIT - 1};t=\\d+$`))
    expect((await get('/fallback')).ratelimit).toMatch(new RegExp(`^"default";r=${LIMIT - 1};t=\\d+$`))
    await server.stop()

    for (let i = 0; i < 3; i++) {
      const closed = await get('/closed')
      expect(closed.status).toBe(503)
      expect(closed.type).toMatch(/^application\/problem\+json/)
      expect(JSON.parse(closed.body)).toMatchObject({ status: 503, code: 'BW_STORE_UNAVAILABLE' })
      expect(closed.ms).toBeLessThanOrEqual(STORE_TIMEOUT_MS + SLACK_MS)
    }
    // The fallback store starts empty: the client gets the whole limit again from it, then its 429.
    const fallback = []
    for (let i = 0; i < LIMIT + 1; i++) fallback.push(await get('/fallback'))
    expect(fallback.map((r) => r.status)).toEqual([200, 200, 200, 429])
    expect(fallback[0]?.ratelimit).toMatch(new RegExp(`^"default";r=${LIMIT - 1};t=\\d+$`))
    expect(JSON.parse(fallback[3]!.body)).toMatchObject({ code: 'BW_RATE_LIMITED' })
    for (const answer of fallback) expect(answer.ms).toBeLessThanOrEqual(STORE_TIMEOUT_MS + SLACK_MS)
    expect(app.handled('GET /closed')).toBe(1)
    expect(app.handled('GET /fallback')).toBe(1 + LIMIT)
  })

  it('decides from Redis again by itself once Redis is back (empty: a fresh count)', async () => {
    await server.start()
    const deadline = Date.now() + 15_000
    let closed = await get('/closed')
    while (closed.status !== 200) {
      expect(Date.now(), 'fail-closed never recovered').toBeLessThan(deadline)
      await sleep(100)
      closed = await get('/closed')
    }
    expect(closed.ratelimit).toMatch(new RegExp(`^"default";r=${LIMIT - 1};t=\\d+$`))
  })
})
