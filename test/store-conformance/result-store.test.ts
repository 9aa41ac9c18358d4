// One set of behaviours every ResultStore must show, run against MemoryResultStore, and RedisResultStore on one
// Redis and on a real 3-master Redis Cluster through each ioredis major: JSON text kept exactly, stored-at times
// that give true ages, overwrite, TTL, awkward keys kept apart; and for Redis, that whatever else sits under a key
// (garbage, a foreign format, another type) reads as a miss, never an error — through the policy too.

import { randomUUID } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import { createStaleIfError, MemoryResultStore, type ResultStore } from '@breakwater/core'
import { RedisResultStore } from '@breakwater/redis'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IOREDIS_MAJORS, type IoredisMajor, type StoreRedis, sleep, startStoreRedis } from '../support/redis-server.js'

interface Target {
  name: string
  store?: ResultStore
  /** Redis only: the client, to inspect and corrupt keys. */
  admin?: Redis | Cluster
}

interface RedisTarget extends Target {
  major: IoredisMajor
  kind: 'single' | 'cluster'
}

const memoryTarget: Target = { name: 'MemoryResultStore' }
const redisTargets = IOREDIS_MAJORS.flatMap((major) => [
  { major, kind: 'single' as const, name: `RedisResultStore on a single Redis (${major})` } as RedisTarget,
  { major, kind: 'cluster' as const, name: `RedisResultStore on a 3-master Redis Cluster (${major})` } as RedisTarget,
])
const targets: Target[] = [memoryTarget, ...redisTargets]

let redis: StoreRedis | undefined
const prefix = `bw-result-conformance-${randomUUID().slice(0, 8)}:`
const MINUTE = 60_000

beforeAll(async () => {
  memoryTarget.store = new MemoryResultStore()
  redis = await startStoreRedis()
  for (const target of redisTargets) {
    const client = redis.clients[target.major][target.kind]
    target.store = new RedisResultStore({ client, prefix })
    target.admin = client
  }
})

afterAll(async () => {
  await redis?.close()
})

let counter = 0
const freshKey = (label: string): string => `inventory:${label}-${++counter}`

describe.each(targets)('$name', (target) => {
  const store = (): ResultStore => target.store!

  it('answers undefined for a key never stored', async () => {
    await expect(store().get(freshKey('missing'))).resolves.toBeUndefined()
  })

  it('keeps the JSON text exactly, with a stored-at time of now', async () => {
    const texts = [
      '{"sku":"a-1","qty":3,"tags":["x","y"]}',
      '"ünïcödé ✓ 𝄞 \\u0000 {braces} %25"',
      'null',
      JSON.stringify({ items: Array.from({ length: 2000 }, (_, i) => ({ i, name: `item ${i}` })) }),
    ]
    for (const text of texts) {
      const key = freshKey('text')
      const before = Date.now()
      await store().set(key, text, MINUTE)
      const entry = await store().get(key)
      const after = Date.now()
      expect(entry?.value).toBe(text)
      // Redis stamps with its own clock (ms resolution), the same machine's: a few ms of slack either way.
      expect(entry?.storedAt).toBeGreaterThanOrEqual(before - 5)
      expect(entry?.storedAt).toBeLessThanOrEqual(after + 5)
    }
  })

  it('gives the true age of an entry: stored-at stays put while time passes', async () => {
    const key = freshKey('age')
    await store().set(key, '1', MINUTE)
    await sleep(250)
    const entry = await store().get(key)
    const age = Date.now() - (entry?.storedAt ?? Number.NaN)
    expect(age).toBeGreaterThanOrEqual(240)
    expect(age).toBeLessThan(5_000)
  })

  it('replaces an entry on set, with a new stored-at time', async () => {
    const key = freshKey('overwrite')
    await store().set(key, '"first"', MINUTE)
    const first = await store().get(key)
    await sleep(50)
    await store().set(key, '"second"', MINUTE)
    const second = await store().get(key)
    expect(second?.value).toBe('"second"')
    expect(second?.storedAt).toBeGreaterThanOrEqual((first?.storedAt ?? 0) + 40)
  })

  it('forgets an entry after its TTL', async () => {
    const key = freshKey('ttl')
    await store().set(key, '"short"', 150)
    expect((await store().get(key))?.value).toBe('"short"')
    await sleep(400)
    await expect(store().get(key)).resolves.toBeUndefined()
  })

  it('keeps awkward keys apart: braces, percent signs, unicode, a long key', async () => {
    const keys = ['a{b}', '}x', '{', '%7B', '%257B', 'ключ', 'k'.repeat(300), 'a:b', 'a']
    const base = freshKey('awkward')
    await Promise.all(keys.map((key, i) => store().set(`${base}:${key}`, String(i), MINUTE)))
    const values = await Promise.all(keys.map((key) => store().get(`${base}:${key}`)))
    expect(values.map((entry) => entry?.value)).toEqual(keys.map((_, i) => String(i)))
  })

  it('serves 200 keys written concurrently (spread over the Cluster’s masters)', async () => {
    const base = freshKey('many')
    const keys = Array.from({ length: 200 }, (_, i) => `${base}:${i}`)
    await Promise.all(keys.map((key, i) => store().set(key, `{"n":${i}}`, MINUTE)))
    const values = await Promise.all(keys.map((key) => store().get(key)))
    expect(values.map((entry) => entry?.value)).toEqual(keys.map((_, i) => `{"n":${i}}`))
  })

  if (target.name.startsWith('Redis')) {
    const keyOf = (key: string): string => `${prefix}{${key}}:result`

    it('keeps one string per entry under <prefix>{<key>}:result, expiring with the TTL (PX)', async () => {
      const key = freshKey('layout')
      await store().set(key, '{"a":1}', MINUTE)
      const admin = target.admin!
      expect(await admin.type(keyOf(key))).toBe('string')
      const ttl = await admin.pttl(keyOf(key))
      expect(ttl).toBeGreaterThan(MINUTE - 5_000)
      expect(ttl).toBeLessThanOrEqual(MINUTE)
      expect(await admin.get(keyOf(key))).toMatch(/^bw1 \d{13} \{"a":1\}$/)
    })

    it('reads garbage, a foreign format and another type under the key as a miss, never an error', async () => {
      const admin = target.admin!
      const written: Array<[string, (name: string) => Promise<unknown>]> = [
        ['garbage', (name) => admin.set(name, '\u0000\u00ff not ours at all')],
        ['json', (name) => admin.set(name, '{"value":1,"storedAt":1}')],
        ['bad-time', (name) => admin.set(name, 'bw1 yesterday {"a":1}')],
        ['no-body', (name) => admin.set(name, 'bw1 1733333333333')],
        ['empty', (name) => admin.set(name, '')],
        ['hash', (name) => admin.hset(name, 'value', '1')],
        ['list', (name) => admin.rpush(name, 'bw1 1733333333333 1')],
      ]
      for (const [label, write] of written) {
        const key = freshKey(label)
        await write(keyOf(key))
        await expect(store().get(key), label).resolves.toBeUndefined()
      }
    })

    it('lets stale-if-error treat a corrupt entry as a miss: the call fails with its own error', async () => {
      const admin = target.admin!
      const stale = createStaleIfError({ name: 'inventory', store: store(), storeTimeoutMs: 2_000 })
      const cacheKey = `sku-${++counter}`
      // The JSON inside our envelope is cut short: the store hands it on, the policy cannot parse it.
      await admin.set(keyOf(`inventory:${cacheKey}`), `bw1 ${Date.now()} {"qty":`, 'PX', MINUTE)
      const outage = new Error('ECONNREFUSED')
      // A miss, not a store failure: nothing is reported on breakwater:store:error.
      const storeErrors: unknown[] = []
      const onStoreError = (message: unknown): void => {
        storeErrors.push(message)
      }
      diagnostics.subscribe('breakwater:store:error', onStoreError)
      try {
        await expect(stale.execute(() => Promise.reject(outage), { cacheKey })).rejects.toBe(outage)
        await admin.set(keyOf(`inventory:${cacheKey}`), 'garbage', 'PX', MINUTE)
        await expect(stale.execute(() => Promise.reject(outage), { cacheKey })).rejects.toBe(outage)
        await admin.del(keyOf(`inventory:${cacheKey}`))
        await admin.hset(keyOf(`inventory:${cacheKey}`), 'a', '1')
        await expect(stale.execute(() => Promise.reject(outage), { cacheKey })).rejects.toBe(outage)
        await admin.del(keyOf(`inventory:${cacheKey}`))
      } finally {
        diagnostics.unsubscribe('breakwater:store:error', onStoreError)
      }
      expect(storeErrors).toEqual([])
      // And a good result written through the policy is served from Redis.
      await stale.execute(() => ({ qty: 4 }), { cacheKey })
      await sleep(50)
      await expect(stale.run(() => Promise.reject(outage), { cacheKey })).resolves.toMatchObject({
        value: { qty: 4 },
        source: 'stale',
      })
    })
  }
})
