// Redis for integration tests: the run's shared server (testRedisUrl) and throwaway servers and clusters that a
// suite owns (startRedis, startCluster) — never the machine's own Redis.

import { once } from 'node:events'
import { Cluster, Redis } from 'ioredis'
import { inject } from 'vitest'

import { type RedisCluster, startCluster } from './redis-process.js'

export {
  assertRedisInstalled,
  type RedisCluster,
  type RedisServer,
  sleep,
  startCluster,
  startRedis,
} from './redis-process.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the redis-server that global-setup.ts starts for the whole integration run. */
    redisUrl: string
  }
}

/**
 * URL of the redis-server that test/support/global-setup.ts started for this integration run. Use it instead
 * of any Redis on the machine (6379 may be someone else's). Tests may share it: use unique keys or prefixes.
 *
 * @example
 * const client = new Redis(testRedisUrl())
 */
export function testRedisUrl(): string {
  const url = process.env.BW_TEST_REDIS_URL ?? inject('redisUrl')
  if (typeof url !== 'string' || url.length === 0) {
    throw new Error('No test Redis: run through the vitest "integration" project, whose global setup starts one.')
  }
  return url
}

/**
 * Resolve once an ioredis client is connected and ready (at once if it already is) — needed before using a
 * client with `enableOfflineQueue: false`, which rejects commands until then.
 *
 * @example
 * const client = new Redis(testRedisUrl(), { enableOfflineQueue: false })
 * await untilReady(client)
 */
export async function untilReady(client: Redis | Cluster, timeoutMs = 10_000): Promise<void> {
  if (client.status === 'ready') return
  await once(client, 'ready', { signal: AbortSignal.timeout(timeoutMs) })
}

/** A store conformance suite's Redis: a client of the run's server and one of a 3-master cluster it owns. */
export interface StoreRedis {
  single: Redis
  cluster: Cluster
  /** Disconnect both clients and stop the cluster. */
  close(): Promise<void>
}

/**
 * Clients with the README's recommended settings (auto-pipelining included, so the suites prove they work) to
 * the run's Redis and to a fresh 3-master cluster, both ready.
 *
 * @example
 * let redis: StoreRedis
 * beforeAll(async () => { redis = await startStoreRedis() })
 * afterAll(() => redis?.close())
 */
export async function startStoreRedis(): Promise<StoreRedis> {
  const single = new Redis(testRedisUrl(), {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    enableAutoPipelining: true,
  })
  let servers: RedisCluster
  try {
    servers = await startCluster()
  } catch (error) {
    single.disconnect()
    throw error
  }
  const cluster = new Cluster(servers.startupNodes, {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    redisOptions: { maxRetriesPerRequest: 1 },
  })
  const close = async (): Promise<void> => {
    single.disconnect()
    cluster.disconnect()
    await servers.stop()
  }
  try {
    await Promise.all([untilReady(single), untilReady(cluster)])
  } catch (error) {
    await close()
    throw error
  }
  return { single, cluster, close }
}
