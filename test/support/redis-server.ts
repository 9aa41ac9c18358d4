// Redis for integration tests: the run's shared server (testRedisUrl) and throwaway servers and clusters that a
// suite owns (startRedis, startCluster) — never the machine's own Redis.

import { once } from 'node:events'
import { Cluster, Redis } from 'ioredis'
import * as ioredis6 from 'ioredis6'
import { inject } from 'vitest'

import { startCluster } from './redis-process.js'

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

/** The ioredis majors `@breakwater/redis` supports (its peer range): each store suite runs on both. */
export const IOREDIS_MAJORS = ['ioredis 5', 'ioredis 6'] as const
export type IoredisMajor = (typeof IOREDIS_MAJORS)[number]

/** A single-node and a Cluster client of one ioredis major. */
export interface StoreClients {
  single: Redis
  cluster: Cluster
}

/** A store conformance suite's Redis: clients of the run's server and of a 3-master cluster it owns. */
export interface StoreRedis extends StoreClients {
  /** The same two servers through each supported ioredis major (`single`/`cluster` are ioredis 5's). */
  clients: Record<IoredisMajor, StoreClients>
  /** Disconnect every client and stop the cluster. */
  close(): Promise<void>
}

/**
 * ioredis 6 typed as the ioredis 5 the test workspace compiles against: the suites call the same API on both,
 * and the packaging test type-checks the published declarations against a real ioredis 6 install.
 */
const MODULES = {
  'ioredis 5': { Redis, Cluster },
  'ioredis 6': ioredis6 as unknown as { Redis: typeof Redis; Cluster: typeof Cluster },
}

/**
 * Clients with the README's recommended settings (auto-pipelining included, so the suites prove they work) to
 * the run's Redis and to a fresh 3-master cluster, through ioredis 5 and ioredis 6, all ready.
 *
 * @example
 * let redis: StoreRedis
 * beforeAll(async () => { redis = await startStoreRedis() })
 * afterAll(() => redis?.close())
 */
export async function startStoreRedis(): Promise<StoreRedis> {
  const servers = await startCluster()
  const clients = {} as Record<IoredisMajor, StoreClients>
  for (const major of IOREDIS_MAJORS) {
    const module = MODULES[major]
    clients[major] = {
      single: new module.Redis(testRedisUrl(), {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        enableAutoPipelining: true,
      }),
      cluster: new module.Cluster(servers.startupNodes, {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        redisOptions: { maxRetriesPerRequest: 1 },
      }),
    }
  }
  const all = Object.values(clients)
  const close = async (): Promise<void> => {
    for (const { single, cluster } of all) {
      single.disconnect()
      cluster.disconnect()
    }
    await servers.stop()
  }
  try {
    await Promise.all(all.flatMap(({ single, cluster }) => [untilReady(single), untilReady(cluster)]))
  } catch (error) {
    await close()
    throw error
  }
  return { ...clients['ioredis 5'], clients, close }
}
