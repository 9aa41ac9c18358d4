// Redis for integration tests: the run's shared server (testRedisUrl) and throwaway servers and clusters that a
// suite owns (startRedis, startCluster) — never the machine's own Redis.

import { once } from 'node:events'
import type { Cluster, Redis } from 'ioredis'
import { inject } from 'vitest'

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
