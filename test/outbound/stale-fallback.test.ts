// Stale-if-error and fallback over real sockets: a loopback upstream, and one Redis shared by two "instances" of a
// service, each with its own ioredis client, RedisResultStore, policies and breaker. What one instance fetched is
// served, with its age, by the other when the upstream fails; with nothing stored, the fallback answers.

import { randomUUID } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import {
  createFallback,
  createStaleIfError,
  dependency,
  type ExecuteOptions,
  type FallbackServedEvent,
  type Served,
  type StaleServedEvent,
} from '@breakwater/core'
import { RedisResultStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { sleep, testRedisUrl, untilReady } from '../support/redis-server.js'
import { startUpstream, type Upstream } from './upstream.js'

interface Inventory {
  items: string[]
  query: string
}

const prefix = `bw-stale-outbound-${randomUUID().slice(0, 8)}:`
const clients: Redis[] = []
let upstream: Upstream

beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    clients.push(new Redis(testRedisUrl(), { enableOfflineQueue: false, maxRetriesPerRequest: 1 }))
  }
  await Promise.all(clients.map((client) => untilReady(client)))
})
afterAll(() => {
  for (const client of clients) client.disconnect()
})
beforeEach(async () => {
  upstream = await startUpstream()
  await (await fetch(`${upstream.url}/warm-up`)).text()
})
afterEach(async () => {
  await upstream.close()
})

/** One instance of the service: its own Redis client and store, and the inventory dependency's layers. */
function instance(client: Redis) {
  const inventory = dependency('inventory', {
    breaker: { consecutiveFailures: 1, openMs: 10_000 },
    attemptTimeoutMs: 1_000,
  })
  const stale = createStaleIfError({
    name: 'inventory',
    store: new RedisResultStore({ client, prefix }),
    maxStaleMs: '1m',
    storeTimeoutMs: 1_000,
  })
  const fallback = createFallback({ name: 'inventory', value: { items: [], query: '' } as Inventory })
  const load = async ({ signal }: { signal: AbortSignal }): Promise<Inventory> => {
    const response = await fetch(`${upstream.url}/inventory`, { signal })
    if (!response.ok)
      throw Object.assign(new Error(`upstream answered ${response.status}`), { status: response.status })
    return (await response.json()) as Inventory
  }
  // The layers as dependency() stacks them: the fallback outermost, stale-if-error inside it, then the rest.
  const get = (cacheKey: string): Promise<Served<Inventory>> => {
    const options: ExecuteOptions = { cacheKey }
    return fallback.serve(
      () =>
        stale.serve(
          () => inventory.execute(load, options).then((value) => ({ value, source: 'upstream' as const, ageMs: 0 })),
          options,
        ),
      options,
    )
  }
  return { get, inventory }
}

it('serves what one instance stored from the other instance when the upstream fails, with its age; the fallback when nothing is stored', async () => {
  const stale: StaleServedEvent[] = []
  const fallbacks: FallbackServedEvent[] = []
  const onStale = (m: unknown): void => {
    stale.push(m as StaleServedEvent)
  }
  const onFallback = (m: unknown): void => {
    fallbacks.push(m as FallbackServedEvent)
  }
  diagnostics.subscribe('breakwater:stale:served', onStale)
  diagnostics.subscribe('breakwater:fallback:served', onFallback)
  try {
    const [clientA, clientB, admin] = clients as [Redis, Redis, Redis]
    const a = instance(clientA)
    const b = instance(clientB)

    const fresh = await a.get('all')
    expect(fresh).toEqual({ value: { items: ['inventory'], query: '' }, source: 'upstream', ageMs: 0 })
    // The write is in the background: wait until it is in Redis.
    const key = `${prefix}{inventory:all}:result`
    for (let i = 0; i < 200 && (await admin.exists(key)) === 0; i++) await sleep(10)
    expect(await admin.exists(key)).toBe(1)

    await sleep(300)
    upstream.jsonStatus = 503
    const callsBefore = upstream.calls.get('/inventory') ?? 0

    // Instance B never fetched anything: it serves A's result, from Redis, with its age.
    const served = await b.get('all')
    expect(served.source).toBe('stale')
    expect(served.value).toEqual(fresh.value)
    expect(served.ageMs).toBeGreaterThanOrEqual(290)
    expect(served.ageMs).toBeLessThan(10_000)
    expect((served.error as { status?: number }).status).toBe(503)
    expect(upstream.calls.get('/inventory')).toBe(callsBefore + 1) // B did try the upstream first
    expect(stale).toEqual([{ policy: 'inventory', ageMs: served.ageMs, reason: 'error' }])

    // B's breaker opened on that failure: a key nobody stored gets the fallback, without a call upstream.
    const nothing = await b.get('never-stored')
    expect(nothing).toMatchObject({ value: { items: [], query: '' }, source: 'fallback', ageMs: 0 })
    expect(b.inventory.breaker?.state).toBe('open')
    expect(fallbacks).toEqual([{ policy: 'inventory', reason: 'circuit-open' }])

    // With the breaker open, the stored result is preferred to the fallback value, still without a call.
    const again = await b.get('all')
    expect(again).toMatchObject({ value: fresh.value, source: 'stale' })
    expect(stale.at(-1)).toMatchObject({ policy: 'inventory', reason: 'circuit-open' })
    expect(upstream.calls.get('/inventory')).toBe(callsBefore + 1)

    // The upstream recovers: A answers from it again and refreshes the stored result for everyone.
    upstream.jsonStatus = 200
    await expect(a.get('all')).resolves.toMatchObject({ source: 'upstream' })
  } finally {
    diagnostics.unsubscribe('breakwater:stale:served', onStale)
    diagnostics.unsubscribe('breakwater:fallback:served', onFallback)
  }
})
