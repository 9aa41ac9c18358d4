// RedisRateLimitStore coalescing, counted by Redis itself (INFO commandstats on servers this file owns): the
// decisions of one event-loop turn reach Redis as one EVALSHA for all their keys (one per hash slot on a
// Cluster), every result goes back to its own key, and a failed call fails every decision in it.

import { createRateLimiter, type RateLimitResult, type RequestView, type ResolvedRule } from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import calculateSlot from 'cluster-key-slot'
import { Cluster, Redis } from 'ioredis'
import * as ioredis6 from 'ioredis6'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  IOREDIS_MAJORS,
  type RedisCluster,
  type RedisServer,
  startCluster,
  startRedis,
  untilReady,
} from '../support/redis-server.js'

const HOUR = 3_600_000
const PREFIX = 'bw-coalesce:'
const MODULES = {
  'ioredis 5': { Redis, Cluster },
  'ioredis 6': ioredis6 as unknown as { Redis: typeof Redis; Cluster: typeof Cluster },
}

let server: RedisServer
let cluster: RedisCluster
const clients: Array<Redis | Cluster> = []

beforeAll(async () => {
  ;[server, cluster] = await Promise.all([startRedis(), startCluster()])
})

afterAll(async () => {
  for (const client of clients) client.disconnect()
  await Promise.all([server?.stop(), cluster?.stop()])
})

const rule = (name: string, algorithm: ResolvedRule['algorithm'], limit: number): ResolvedRule =>
  Object.freeze({ name, algorithm, limit, windowMs: HOUR, burst: limit })

/** EVALSHA and EVAL calls a server has counted since its last CONFIG RESETSTAT. */
async function scriptCalls(node: RedisServer): Promise<{ evalsha: number; eval: number }> {
  const stats = await node.cli('info', 'commandstats')
  const calls = (name: string): number => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0)
  return { evalsha: calls('evalsha'), eval: calls('eval') }
}

async function singleClient(major: (typeof IOREDIS_MAJORS)[number]): Promise<Redis> {
  const client = new MODULES[major].Redis(server.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
  })
  clients.push(client)
  await untilReady(client)
  return client
}

let run = 0

describe.each(IOREDIS_MAJORS)('one Redis (%s)', (major) => {
  let client: Redis
  let store: RedisRateLimitStore
  const one = [rule('default', 'gcra', 100)]
  const two = [rule('wide', 'sliding-window', 50), rule('narrow', 'fixed-window', 20)]

  beforeAll(async () => {
    client = await singleClient(major)
    store = new RedisRateLimitStore({ client, prefix: `${PREFIX}${++run}:` })
    // Loads the script (EVALSHA, NOSCRIPT, then EVAL), so the counts below are the store's calls alone.
    await store.consume('warm-up', one, 1)
  })

  it('sends the decisions of one turn (many keys, repeated keys, mixed rules, refunds) as one EVALSHA', async () => {
    const charged = await Promise.all([store.consume('refunded', one, 3)])
    await server.cli('config', 'resetstat')
    const keys = Array.from({ length: 40 }, (_, i) => `turn-${run}-${i}`)
    const decided = Promise.all([
      ...keys.map((key) => store.consume(key, one, 1)),
      ...keys.slice(0, 10).map((key) => store.consume(key, one, 2)),
      ...keys.slice(20, 30).map((key) => store.consume(`${key}-two`, two, 1)),
      store.refund('refunded', one, 3, 0),
    ])
    const results = (await decided).slice(0, -1) as RateLimitResult[]
    expect(await scriptCalls(server)).toEqual({ evalsha: 1, eval: 0 })
    expect(results.every((r) => r.allowed)).toBe(true)
    // Each key's own count: 1 unit, then 2 more for the first ten (decided after, in call order).
    expect(results.slice(0, 40).map((r) => r.rules[0]!.remaining)).toEqual(Array.from({ length: 40 }, () => 99))
    expect(results.slice(40, 50).map((r) => r.rules[0]!.remaining)).toEqual(Array.from({ length: 10 }, () => 97))
    expect(results.slice(50).map((r) => r.rules.map((x) => x.remaining))).toEqual(
      Array.from({ length: 10 }, () => [49, 19]),
    )
    expect(charged[0]!.rules[0]!.remaining).toBe(97)
    // The refund of the same turn gave the 3 units back.
    expect((await store.peek('refunded', one, 0)).rules[0]!.remaining).toBe(100)
  })

  it('splits a turn into calls of at most 128 decisions', async () => {
    await server.cli('config', 'resetstat')
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => store.consume(`big-${run}-${i}`, one, 1)))
    expect(results.every((r) => r.allowed && r.rules[0]!.remaining === 99)).toBe(true)
    expect(await scriptCalls(server)).toEqual({ evalsha: 3, eval: 0 })
  })

  it('maps every result back to its key under concurrency (costs, limits and denials differ per key)', async () => {
    const keys = Array.from({ length: 60 }, (_, i) => `map-${run}-${i}`)
    // Key i has used i % 13 of its 10-unit quota (more than 10: it was charged what fitted, in 3-unit steps).
    const used = keys.map((_, i) => i % 13)
    const limit = [rule('default', 'fixed-window', 10)]
    await Promise.all(keys.flatMap((key, i) => Array.from({ length: used[i]! }, () => store.consume(key, limit, 1))))
    await server.cli('config', 'resetstat')
    // In shuffled order, each key asks for 2 units: allowed exactly where 2 fit.
    const order = keys.map((_, i) => (i * 37) % keys.length)
    const answers = await Promise.all(order.map((i) => store.consume(keys[i]!, limit, 2)))
    expect(await scriptCalls(server)).toEqual({ evalsha: 1, eval: 0 })
    order.forEach((i, position) => {
      const before = Math.min(10, used[i]!)
      const answer = answers[position]!
      expect({ key: i, allowed: answer.allowed }).toEqual({ key: i, allowed: before + 2 <= 10 })
      expect({ key: i, remaining: answer.rules[0]!.remaining }).toEqual({
        key: i,
        remaining: before + 2 <= 10 ? 10 - before - 2 : 10 - before,
      })
    })
  })

  it('fails every decision of a call whose script fails, and each gets the limiter failure policy', async () => {
    const limiterOf = () =>
      createRateLimiter({ id: `poison-${run}`, limit: 5, windowMs: '1h', store, onStoreError: 'fail-closed' })
    const limiter = limiterOf()
    const view = (ip: string): RequestView => ({
      method: 'GET',
      path: '/',
      ip,
      header: () => undefined,
      signal: new AbortController().signal,
    })
    // A hash where one client's counter lives: GET fails with WRONGTYPE, and with it the whole call.
    await client.hset(`${store.prefix}{poison-${run}:10.0.0.3}:default`, 'x', '1')
    const ips = Array.from({ length: 6 }, (_, i) => `10.0.0.${i}`)
    const decisions = await Promise.all(ips.map((ip) => limiter.check(view(ip))))
    for (const decision of decisions) {
      expect(decision).toMatchObject({ action: 'reject', status: 503, body: { code: 'BW_STORE_UNAVAILABLE' } })
    }
    // Lua does not roll back: the keys decided before the poisoned one in that call stay charged, once — a
    // failed call errs on the side of counting, as a timed-out one does. (A new limiter: the failed one skips
    // its store for a second after a failure.)
    await client.del(`${store.prefix}{poison-${run}:10.0.0.3}:default`)
    const fresh = limiterOf()
    const again = await Promise.all(ips.map((ip) => fresh.check(view(ip))))
    for (const decision of again) expect(decision).toMatchObject({ action: 'continue' })
    const remaining = again.map((decision) => Number(/r=(\d+)/.exec(String(decision.headers))?.[1]))
    for (const r of remaining) expect([3, 4]).toContain(r)
    expect(remaining[3]).toBe(4)
  })
})

describe.each(IOREDIS_MAJORS)('a 3-master Redis Cluster (%s)', (major) => {
  let client: Cluster
  let store: RedisRateLimitStore
  const one = [rule('default', 'gcra', 100)]
  const prefix = `${PREFIX}cluster-${major.replace(' ', '')}:`

  beforeAll(async () => {
    client = new MODULES[major].Cluster(cluster.startupNodes, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      redisOptions: { maxRetriesPerRequest: 1 },
    })
    clients.push(client)
    await untilReady(client)
    store = new RedisRateLimitStore({ client, prefix })
    await Promise.all(Array.from({ length: 30 }, (_, i) => store.consume(`warm-up-${i}`, one, 1)))
  })

  it('sends one EVALSHA per hash slot of the turn, with results back at their keys', async () => {
    // Keys grouped by the slot their hash tag falls in: 6 slots × 4 keys.
    const bySlot = new Map<number, string[]>()
    for (let i = 0; bySlot.size < 6 || [...bySlot.values()].filter((k) => k.length >= 4).length < 6; i++) {
      const key = `slot-${i}`
      const slot = calculateSlot(`${prefix}{${key}}:default`)
      const list = bySlot.get(slot) ?? []
      list.push(key)
      bySlot.set(slot, list)
    }
    const groups = [...bySlot.values()].filter((k) => k.length >= 4).slice(0, 6)
    const keys = groups.flatMap((list) => list.slice(0, 4))
    await Promise.all(cluster.nodes.map((node) => node.cli('config', 'resetstat')))
    const costs = keys.map((_, i) => 1 + (i % 5))
    const results = await Promise.all(keys.map((key, i) => store.consume(key, one, costs[i]!)))
    const counts = await Promise.all(cluster.nodes.map(scriptCalls))
    expect(counts.reduce((sum, c) => sum + c.evalsha, 0)).toBe(6)
    expect(counts.reduce((sum, c) => sum + c.eval, 0)).toBe(0)
    expect(results.map((r) => r.rules[0]!.remaining)).toEqual(costs.map((cost) => 100 - cost))
  })
})
