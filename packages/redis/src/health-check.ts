// A readiness check for the ioredis client behind Breakwater's stores: PING on a single node, or on every
// master of a Cluster, so readiness fails when the shared state is unreachable.

import { type Duration, type HealthCheck, knownOptions, optionKeys } from '@breakwater/core'
import type { Cluster, Redis } from 'ioredis'

/** Options of {@link redisCheck}. */
export interface RedisCheckOptions {
  /** The component name in the `component:measurement` key. Default `"redis"`. */
  name?: string
  /** Cut the PING after this long. Default `500` ms. */
  timeoutMs?: Duration
  /**
   * Default `true`: Redis unreachable fails readiness. Set `false` when your stores `fail-open` or fall back to
   * memory, so the replica keeps serving (and warns) while Redis is down.
   */
  critical?: boolean
}

/** Every option of redisCheck; any other key is an error naming it. */
const OPTIONS = optionKeys<RedisCheckOptions>()(['name', 'timeoutMs', 'critical'])

/**
 * Readiness check of an ioredis `Redis` or `Cluster` client: fails at once when the client is not connected
 * (no command is queued behind a dead connection), else PINGs (every master of a Cluster) and reports the round
 * trip in ms. It never connects, quits or reconfigures the client.
 *
 * @example
 * import { redisCheck } from '@breakwater/redis'
 * app.use(health({ checks: [redisCheck(redis, { timeoutMs: 300 })] }))
 */
export function redisCheck(client: Redis | Cluster, options: RedisCheckOptions = {}): HealthCheck {
  if (typeof client !== 'object' || client === null || typeof client.ping !== 'function') {
    throw new TypeError('redisCheck(client): client must be an ioredis Redis or Cluster')
  }
  knownOptions('redisCheck', options, OPTIONS)
  return {
    name: options.name ?? 'redis',
    measurement: 'responseTime',
    timeoutMs: options.timeoutMs ?? 500,
    critical: options.critical ?? true,
    async check() {
      // With the offline queue on (ioredis' default) a PING on a broken connection would wait, not fail.
      if (client.status !== 'ready') throw new Error(`Redis client is ${client.status}`)
      const nodes = isCluster(client) ? client.nodes('master') : [client]
      if (nodes.length === 0) throw new Error('Redis Cluster has no master')
      await Promise.all(nodes.map((node) => node.ping()))
    },
  }
}

function isCluster(client: Redis | Cluster): client is Cluster {
  return (client as { isCluster?: boolean }).isCluster === true
}
