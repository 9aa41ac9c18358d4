// The idempotency adapter contract, proved once for Express, Fastify and Koa over real sockets, with the memory
// store and with RedisIdempotencyStore: replay, in-flight conflicts, mismatches, key validation, scoping, and
// every response that must not be stored (5xx, thrown, oversized, streamed) freeing its key.

import { randomUUID } from 'node:crypto'
import http from 'node:http'
import { ErrorCode, type IdempotencyOptions, type IdempotencyStore, MemoryIdempotencyStore } from '@breakwater/core'
import { RedisIdempotencyStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { testRedisUrl } from '../support/redis-server.js'
import { FRAMEWORKS } from './apps.js'
import { type IdempotencyApp, startIdempotencyApp } from './idempotency-apps.js'
import { STORES } from './support.js'

const matrix = FRAMEWORKS.flatMap((framework) => STORES.map((store) => [framework, store] as const))

let redis: Redis
beforeAll(async () => {
  redis = new Redis(testRedisUrl(), { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  await redis.connect()
})
afterAll(() => redis.quit())

interface Reply {
  status: number
  headers: Headers
  text: string
  json: () => unknown
}

describe.each(matrix)('%s adapter with the %s store', (framework, storeKind) => {
  const apps: IdempotencyApp[] = []
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })

  const newStore = (): IdempotencyStore =>
    storeKind === 'memory'
      ? new MemoryIdempotencyStore()
      : new RedisIdempotencyStore({ client: redis, prefix: `bw:idem-conformance:${randomUUID().slice(0, 8)}:` })
  const start = async (options: IdempotencyOptions = {}): Promise<IdempotencyApp> => {
    // fail-closed with a generous timeout: a broken Redis shows up as 503s, never as silently passing tests.
    const app = await startIdempotencyApp(framework, { store: newStore(), storeTimeoutMs: 2000, ...options })
    apps.push(app)
    return app
  }
  const send = async (
    app: IdempotencyApp,
    path: string,
    key: string | undefined,
    body: unknown = { item: 'book' },
    headers: Record<string, string> = {},
  ): Promise<Reply> => {
    const response = await fetch(app.url + path, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: 'Bearer alice',
        ...(key === undefined ? {} : { 'idempotency-key': key }),
        ...headers,
      },
      body: JSON.stringify(body),
    })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) }
  }

  it('executes once, then replays the stored 201 with its body, Location and Idempotent-Replayed: true', async () => {
    const app = await start()
    const first = await send(app, '/orders', '"order-1"')
    expect(first.status).toBe(201)
    expect(first.json()).toEqual({ id: 1, body: { item: 'book' } })
    expect(first.headers.get('idempotent-replayed')).toBeNull()
    expect(first.headers.get('set-cookie')).toBe('session=1; HttpOnly')
    // A bare token and an sf-string carry the same key.
    const retry = await send(app, '/orders', 'order-1')
    expect(retry.status).toBe(201)
    expect(retry.text).toBe(first.text)
    expect(retry.headers.get('location')).toBe('/orders/1')
    expect(retry.headers.get('content-type')).toBe(first.headers.get('content-type'))
    expect(retry.headers.get('idempotent-replayed')).toBe('true')
    // Set-Cookie and headers outside the allow-list are never replayed.
    expect(retry.headers.get('set-cookie')).toBeNull()
    expect(retry.headers.get('x-order')).toBeNull()
    expect(app.handled('orders')).toBe(1)
  })

  it('runs the handler once for 20 concurrent duplicates; the others get 409 + Retry-After, then the replay', async () => {
    const app = await start()
    const replies = await Promise.all(Array.from({ length: 20 }, () => send(app, '/orders?delayMs=300', 'burst')))
    expect(app.handled('orders')).toBe(1)
    expect(replies.filter((r) => r.status === 201)).toHaveLength(1)
    const conflicts = replies.filter((r) => r.status === 409)
    expect(conflicts).toHaveLength(19)
    for (const conflict of conflicts) {
      expect(conflict.headers.get('retry-after')).toBe('1')
      expect(conflict.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(conflict.json()).toMatchObject({ status: 409, code: ErrorCode.IdempotencyInProgress })
    }
    const after = await send(app, '/orders', 'burst')
    expect(after.status).toBe(201)
    expect(after.headers.get('idempotent-replayed')).toBe('true')
    expect(app.handled('orders')).toBe(1)
  })

  it('with waitMs, concurrent duplicates wait for the first and all receive its response', async () => {
    const app = await start({ waitMs: 3000 })
    const replies = await Promise.all(Array.from({ length: 5 }, () => send(app, '/orders?delayMs=200', 'wait')))
    expect(replies.map((r) => r.status)).toEqual([201, 201, 201, 201, 201])
    expect(new Set(replies.map((r) => r.text)).size).toBe(1)
    expect(replies.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(4)
    expect(app.handled('orders')).toBe(1)
  })

  it('answers 422 when the key is reused with another payload, and ignores key order in JSON', async () => {
    const app = await start()
    expect((await send(app, '/orders', 'pay', { amount: 5, currency: 'EUR' })).status).toBe(201)
    expect((await send(app, '/orders', 'pay', { currency: 'EUR', amount: 5 })).status).toBe(201)
    const mismatch = await send(app, '/orders', 'pay', { amount: 6, currency: 'EUR' })
    expect(mismatch.status).toBe(422)
    expect(mismatch.json()).toMatchObject({ status: 422, code: ErrorCode.IdempotencyMismatch })
    expect(app.handled('orders')).toBe(1)
  })

  it('answers 400 for a missing key when required, and for a malformed, over-long or repeated key', async () => {
    const required = await start({ required: true })
    const missing = await send(required, '/orders', undefined)
    expect(missing.status).toBe(400)
    expect(missing.json()).toMatchObject({ code: ErrorCode.IdempotencyKeyMissing })
    for (const bad of ['"unterminated', 'has space', `"${'k'.repeat(256)}"`, '"a", "b"']) {
      const reply = await send(required, '/orders', bad)
      expect(reply.status, bad).toBe(400)
      expect(reply.json()).toMatchObject({ code: ErrorCode.IdempotencyKeyInvalid })
    }
    expect(await repeatedHeader(required.url)).toBe(400)
    expect(required.handled('orders')).toBe(0)
    // Not required: a request without a key runs as usual, every time.
    const optional = await start()
    expect((await send(optional, '/orders', undefined)).status).toBe(201)
    expect((await send(optional, '/orders', undefined)).status).toBe(201)
    expect(optional.handled('orders')).toBe(2)
  })

  it('keeps callers apart: another scope with the same key executes separately', async () => {
    const app = await start()
    const alice = await send(app, '/orders', 'shared')
    const bob = await send(app, '/orders', 'shared', { item: 'book' }, { authorization: 'Bearer bob' })
    expect(bob.status).toBe(201)
    expect(bob.headers.get('idempotent-replayed')).toBeNull()
    expect(bob.json()).not.toEqual(alice.json())
    expect(app.handled('orders')).toBe(2)
  })

  it('does not store 5xx answers or thrown errors: the key is released and a retry executes', async () => {
    const app = await start()
    expect((await send(app, '/orders?status=503', 'flaky')).status).toBe(503)
    expect((await send(app, '/orders?status=503', 'flaky')).status).toBe(503)
    expect(app.handled('orders')).toBe(2)
    expect((await send(app, '/fail', 'thrown')).status).toBe(500)
    expect((await send(app, '/fail', 'thrown')).status).toBe(500)
    expect(app.handled('fail')).toBe(2)
    // 429 is transient too; a 404 is a final answer and is stored.
    await send(app, '/orders?status=429', 'limited')
    expect((await send(app, '/orders?status=429', 'limited')).headers.get('idempotent-replayed')).toBeNull()
    await send(app, '/orders?status=404', 'gone')
    expect((await send(app, '/orders?status=404', 'gone')).headers.get('idempotent-replayed')).toBe('true')
  })

  it('passes an oversized body through unstored and releases the key', async () => {
    const app = await start({ maxBodyBytes: 1024 })
    const big = await send(app, '/big?bytes=5000', 'big')
    expect(big.status).toBe(201)
    expect((big.json() as { pad: string }).pad).toHaveLength(5000)
    const again = await send(app, '/big?bytes=5000', 'big')
    expect(again.status).toBe(201)
    expect(again.headers.get('idempotent-replayed')).toBeNull()
    expect(app.handled('big')).toBe(2)
  })

  it('passes a streamed body through unstored and releases the key', async () => {
    const app = await start()
    const first = await send(app, '/stream', 'stream')
    expect(first.status).toBe(201)
    expect(first.text).toBe('part-1 of 1\npart-2\n')
    const again = await send(app, '/stream', 'stream')
    expect(again.text).toBe('part-1 of 2\npart-2\n')
    expect(app.handled('stream')).toBe(2)
  })

  it('leaves methods it does not cover alone', async () => {
    const app = await start({ required: true })
    const list = await fetch(`${app.url}/orders`, { headers: { 'idempotency-key': 'k' } })
    expect(list.status).toBe(200)
    expect(list.headers.get('idempotent-replayed')).toBeNull()
    await fetch(`${app.url}/orders`, { headers: { 'idempotency-key': 'k' } })
    expect(app.handled('list')).toBe(2)
  })

  it('fails closed with 503 BW_STORE_UNAVAILABLE, within the store timeout, when the store hangs', async () => {
    const hanging: IdempotencyStore = {
      claim: () => new Promise(() => {}),
      complete: () => new Promise(() => {}),
      release: () => new Promise(() => {}),
      get: () => new Promise(() => {}),
    }
    const app = await start({ store: hanging, storeTimeoutMs: 100 })
    const started = performance.now()
    const reply = await send(app, '/orders', 'down')
    expect(performance.now() - started).toBeLessThan(2000)
    expect(reply.status).toBe(503)
    expect(reply.headers.get('retry-after')).toBe('1')
    expect(reply.json()).toMatchObject({ code: ErrorCode.StoreUnavailable })
    expect(app.handled('orders')).toBe(0)
    const open = await start({ store: hanging, storeTimeoutMs: 100, onStoreError: 'fail-open' })
    expect((await send(open, '/orders', 'down')).status).toBe(201)
  })
})

/** Two Idempotency-Key header lines (fetch would merge them): answered 400. */
function repeatedHeader(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      `${url}/orders`,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'idempotency-key': ['one', 'two'] },
      },
      (response) => {
        response.resume()
        response.on('end', () => resolve(response.statusCode ?? 0))
      },
    )
    request.on('error', reject)
    request.end('{}')
  })
}
