// One set of behaviours every IdempotencyStore must show, run against MemoryIdempotencyStore, and
// RedisIdempotencyStore on one Redis and on a real 3-master Redis Cluster: atomic claims, owner-checked
// complete/extend/release, a lock renewed once when it lapses, a lock TTL separate from the record TTL, and
// bodies kept byte for byte.

import { randomUUID } from 'node:crypto'
import { type IdempotencyStore, MemoryIdempotencyStore, type StoredResponse } from '@breakwater/core'
import { RedisIdempotencyStore } from '@breakwater/redis'
import type { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IOREDIS_MAJORS, type IoredisMajor, type StoreRedis, sleep, startStoreRedis } from '../support/redis-server.js'

interface Target {
  name: string
  store?: IdempotencyStore
  /** Redis only: the client, to inspect keys. */
  admin?: Redis | Cluster
}

interface RedisTarget extends Target {
  major: IoredisMajor
  kind: 'single' | 'cluster'
}

const memoryTarget: Target = { name: 'MemoryIdempotencyStore' }
/** RedisIdempotencyStore on a single Redis and on a 3-master Redis Cluster, through each supported ioredis major. */
const redisTargets = IOREDIS_MAJORS.flatMap((major) => [
  { major, kind: 'single' as const, name: `RedisIdempotencyStore on a single Redis (${major})` } as RedisTarget,
  {
    major,
    kind: 'cluster' as const,
    name: `RedisIdempotencyStore on a 3-master Redis Cluster (${major})`,
  } as RedisTarget,
])
const targets: Target[] = [memoryTarget, ...redisTargets]

let redis: StoreRedis | undefined
const prefix = `bw-idem-conformance-${randomUUID().slice(0, 8)}:`
const HOUR = 3_600_000

beforeAll(async () => {
  memoryTarget.store = new MemoryIdempotencyStore()
  redis = await startStoreRedis()
  for (const target of redisTargets) {
    const client = redis.clients[target.major][target.kind]
    target.store = new RedisIdempotencyStore({ client, prefix })
    target.admin = client
  }
})

afterAll(async () => {
  await redis?.close()
})

let counter = 0
const freshKey = (label: string): string => `idempotency:${label}-${++counter}`
const response = (body: Buffer | string, status = 201): StoredResponse => ({
  status,
  headers: [
    ['Content-Type', 'application/json'],
    ['Location', '/orders/1'],
  ],
  body: Buffer.isBuffer(body) ? body : Buffer.from(body),
})

describe.each(targets)('$name', (target) => {
  const store = (): IdempotencyStore => target.store!

  it('lets exactly one of 50 concurrent claims of a key win; the others see it in progress', async () => {
    const key = freshKey('race')
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store().claim(key, 'fp', `token-${i}`, 30_000)),
    )
    expect(results.filter((r) => r.state === 'claimed')).toHaveLength(1)
    for (const r of results.filter((r) => r.state !== 'claimed')) {
      expect(r).toMatchObject({ state: 'in_progress', fingerprint: 'fp' })
      if (r.state === 'in_progress') {
        expect(r.lockExpiresInMs).toBeGreaterThan(25_000)
        expect(r.lockExpiresInMs).toBeLessThanOrEqual(30_000)
      }
    }
  })

  it('stores the owner’s response and returns it byte for byte, with its fingerprint, to later claims', async () => {
    const key = freshKey('complete')
    const bytes = Buffer.from([0xff, 0x00, 0xfe, 0x7b, 0x22, 0xc3])
    expect(await store().claim(key, 'fp-1', 'owner', 30_000)).toEqual({ state: 'claimed' })
    expect(await store().complete(key, 'owner', response(bytes), HOUR)).toBe(true)
    const again = await store().claim(key, 'fp-2', 'other', 30_000)
    expect(again.state).toBe('completed')
    if (again.state !== 'completed') return
    expect(again.fingerprint).toBe('fp-1')
    expect(again.response.status).toBe(201)
    expect(again.response.headers).toEqual(response('').headers)
    expect(Buffer.compare(again.response.body, bytes)).toBe(0)
    expect(await store().get(key)).toMatchObject({ state: 'completed', fingerprint: 'fp-1' })
  })

  it('keeps an empty body empty', async () => {
    const key = freshKey('empty')
    await store().claim(key, 'fp', 'owner', 30_000)
    await store().complete(key, 'owner', response('', 204), HOUR)
    const record = await store().get(key)
    expect(record?.state === 'completed' && record.response.body.length).toBe(0)
  })

  it('completes and releases only for the owner token', async () => {
    const key = freshKey('owner')
    await store().claim(key, 'fp', 'owner', 30_000)
    expect(await store().complete(key, 'intruder', response('x'), HOUR)).toBe(false)
    expect(await store().release(key, 'intruder')).toBe(false)
    expect((await store().get(key))?.state).toBe('in_progress')
    expect(await store().release(key, 'owner')).toBe(true)
    expect(await store().get(key)).toBeUndefined()
    expect(await store().claim(key, 'fp', 'next', 30_000)).toEqual({ state: 'claimed' })
    // A completed record cannot be released or overwritten by anyone.
    expect(await store().complete(key, 'next', response('first'), HOUR)).toBe(true)
    expect(await store().release(key, 'next')).toBe(false)
    expect(await store().complete(key, 'next', response('second'), HOUR)).toBe(false)
    const record = await store().get(key)
    expect(record?.state === 'completed' && record.response.body.toString()).toBe('first')
  })

  it('renews a lapsed lock once, then lets a claim take the key over (crash recovery)', async () => {
    const crashed = freshKey('lock')
    await store().claim(crashed, 'fp', 'dead-process', 150)
    expect((await store().claim(crashed, 'fp', 'retry', 150)).state).toBe('in_progress')
    await sleep(250)
    // Lapsed: the first claim past the lock renews it once for its own lock TTL (the owner may be stalled).
    const renewed = await store().claim(crashed, 'fp', 'retry', 150)
    expect(renewed.state).toBe('in_progress')
    if (renewed.state === 'in_progress') expect(renewed.lockExpiresInMs).toBeGreaterThan(100)
    await sleep(250)
    expect(await store().claim(crashed, 'fp', 'retry', 30_000)).toEqual({ state: 'claimed' })
    // The dead owner's late completion is refused: the key belongs to the retry now.
    expect(await store().complete(crashed, 'dead-process', response('stale'), HOUR)).toBe(false)
    expect(await store().extend!(crashed, 'dead-process', 30_000)).toBe(false)
  })

  it('lets a stalled owner complete after its lock lapsed, as long as no claim took the key over', async () => {
    const key = freshKey('stalled')
    await store().claim(key, 'fp', 'owner', 150)
    await sleep(250)
    expect((await store().claim(key, 'fp', 'duplicate', 150)).state).toBe('in_progress')
    expect(await store().complete(key, 'owner', response('late but first'), HOUR)).toBe(true)
    const record = await store().claim(key, 'fp', 'duplicate', 150)
    expect(record.state === 'completed' && record.response.body.toString()).toBe('late but first')
  })

  it('extends the lock only for its owner, and clears a renewal', async () => {
    const key = freshKey('extend')
    await store().claim(key, 'fp', 'owner', 150)
    expect(await store().extend!(key, 'intruder', 30_000)).toBe(false)
    await sleep(250)
    expect((await store().claim(key, 'fp', 'duplicate', 150)).state).toBe('in_progress') // renewal
    expect(await store().extend!(key, 'owner', 30_000)).toBe(true)
    const record = await store().get(key)
    expect(record?.state === 'in_progress' && record.lockExpiresInMs).toBeGreaterThan(25_000)
    await store().complete(key, 'owner', response('x'), HOUR)
    expect(await store().extend!(key, 'owner', 30_000)).toBe(false) // a completed record has no lock
  })

  it('keeps a completed record for recordTtlMs, whatever the lock TTL was', async () => {
    const done = freshKey('record')
    await store().claim(done, 'fp', 'owner', 150)
    await store().complete(done, 'owner', response('kept'), 400)
    await sleep(250) // past the lock TTL: a completed record is not bound by it
    expect((await store().get(done))?.state).toBe('completed')
    await sleep(300)
    expect(await store().get(done)).toBeUndefined()
  })

  if (target.name.startsWith('Redis')) {
    it('keeps one hash per record under <prefix>{<key>}:idempotency, kept at most for the record TTL', async () => {
      const key = freshKey('layout')
      await store().claim(key, 'fp', 'owner', 30_000, HOUR)
      const name = `${prefix}{${key}}:idempotency`
      const node = target.admin!
      expect(await node.type(name)).toBe('hash')
      // The lock is a deadline field on Redis's clock; the key's TTL only bounds how long it is kept.
      expect(await node.pttl(name)).toBeGreaterThan(HOUR - 60_000)
      expect(Number(await node.hget(name, 'd'))).toBeGreaterThan(Date.now() + 25_000)
      await store().complete(key, 'owner', response('x'), HOUR)
      expect(await node.pttl(name)).toBeGreaterThan(HOUR - 60_000)
      expect(await node.hexists(name, 't')).toBe(0)
    })
  }
})
