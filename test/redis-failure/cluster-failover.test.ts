// A Redis Cluster master killed under traffic (3 masters, one replica each): no rate-limit check hangs while the
// cluster fails over — each answers within the store timeout, from Redis or as its fail-closed policy says —, the
// replica takes over, and every key is decided by Redis again, without any help, once the client has the new map.

import { performance } from 'node:perf_hooks'
import { createRateLimiter, type RequestView } from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisCluster, type RedisServer, sleep, startCluster, untilReady } from '../support/redis-server.js'

const STORE_TIMEOUT_MS = 250
/** Timers, the event loop and a busy 2-core machine: how late past the store timeout an answer may come. */
const SLACK_MS = 250
/** Failover: the node timeout (a silent master is failed after it) plus the election, bounded. */
const NODE_TIMEOUT_MS = 1_000
const RECOVERY_BOUND_MS = 20_000
/** Clients whose keys spread over every master's slots. */
const CLIENTS = Array.from({ length: 24 }, (_, i) => `198.51.100.${i + 1}`)

const viewOf = (ip: string): RequestView => ({
  method: 'GET',
  path: '/',
  ip,
  header: () => undefined,
  signal: new AbortController().signal,
})

interface Round {
  at: number
  /** Per client: `redis` (allowed with headers from the store), `closed` (503 fail-closed). */
  outcomes: Array<'redis' | 'closed'>
  slowestMs: number
}

describe('Redis Cluster failover under traffic', () => {
  let cluster: RedisCluster
  let client: Cluster

  beforeAll(async () => {
    cluster = await startCluster({ masters: 3, replicas: 1, nodeTimeoutMs: NODE_TIMEOUT_MS })
    client = new Cluster(cluster.startupNodes, {
      enableOfflineQueue: false,
      redisOptions: { maxRetriesPerRequest: 1 },
    })
    client.on('error', () => {}) // the killed master's connection errors are expected here
    await untilReady(client)
    // A replica can take over only once it has synced: wait for every replication link.
    const deadline = Date.now() + 30_000
    for (const node of cluster.nodes) {
      for (;;) {
        const info = await node.cli('info', 'replication')
        if (info.includes('role:master') || info.includes('master_link_status:up')) break
        if (Date.now() > deadline) throw new Error(`replica ${node.port} never synced:\n${info}`)
        await sleep(50)
      }
    }
  }, 90_000)

  afterAll(async () => {
    client?.disconnect()
    await cluster?.stop()
  })

  it('answers every check within the store timeout while a master dies, then decides from Redis again', async () => {
    const limiter = createRateLimiter({
      id: 'failover',
      limit: 1_000_000,
      windowMs: '1h',
      store: new RedisRateLimitStore({ client }),
      storeTimeoutMs: STORE_TIMEOUT_MS,
      onStoreError: 'fail-closed',
    })
    const round = async (): Promise<Round> => {
      const started = performance.now()
      const answers = await Promise.all(
        CLIENTS.map(async (ip) => {
          const begin = performance.now()
          const decision = await limiter.check(viewOf(ip))
          return { decision, ms: performance.now() - begin }
        }),
      )
      return {
        at: started,
        outcomes: answers.map(({ decision }) => {
          if (decision.action === 'continue' && decision.headers !== undefined) return 'redis'
          expect(decision).toMatchObject({ action: 'reject', status: 503, body: { code: 'BW_STORE_UNAVAILABLE' } })
          return 'closed'
        }),
        slowestMs: Math.max(...answers.map((a) => a.ms)),
      }
    }

    const before = await round()
    expect(before.outcomes.every((o) => o === 'redis')).toBe(true)

    const masters: RedisServer[] = []
    for (const node of cluster.nodes) if ((await node.cli('role')).startsWith('master')) masters.push(node)
    expect(masters).toHaveLength(3)
    const victim = masters[0] as RedisServer
    const killedAt = performance.now()
    await victim.stop()

    const rounds: Round[] = []
    let recoveredAt: number | undefined
    while (performance.now() - killedAt < RECOVERY_BOUND_MS) {
      const r = await round()
      rounds.push(r)
      // Recovered: two rounds in a row fully decided by Redis, after at least one round saw the outage.
      const last = rounds.slice(-2)
      if (
        rounds.some((x) => x.outcomes.includes('closed')) &&
        last.length === 2 &&
        last.every((x) => x.outcomes.every((o) => o === 'redis'))
      ) {
        recoveredAt = r.at
        break
      }
      await sleep(50)
    }
    const slowest = Math.max(...rounds.map((r) => r.slowestMs))
    expect(slowest, 'a check waited past the store timeout during failover').toBeLessThanOrEqual(
      STORE_TIMEOUT_MS + SLACK_MS,
    )
    // The dead master's keys failed closed meanwhile; the others' kept being decided by Redis.
    const outage = rounds.filter((r) => r.outcomes.includes('closed'))
    expect(outage.length).toBeGreaterThan(0)
    expect(outage.some((r) => r.outcomes.includes('redis'))).toBe(true)
    expect(recoveredAt, `no recovery within ${RECOVERY_BOUND_MS} ms`).toBeDefined()
    // The replica was promoted: three masters again, none of them the killed one.
    const survivors = cluster.nodes.filter((node) => node !== victim)
    let roles: string[] = []
    for (const node of survivors) roles.push((await node.cli('role')).split('\n')[0] ?? '')
    roles = roles.filter((role) => role === 'master')
    expect(roles).toHaveLength(3)
  }, 60_000)
})
