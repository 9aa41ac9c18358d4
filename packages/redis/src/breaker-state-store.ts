// RedisBreakerStateStore: the open-until time of each named circuit breaker, shared by every process on one
// Redis (or Redis Cluster). One script call per open or read, timed by Redis's clock.

import { createHash } from 'node:crypto'
import type { BreakerStateStore } from '@breakwater/core'
import { taggedKey } from './internal/key-layout.js'
import { scriptCommand } from './internal/script-command.js'
import { checkClient, checkPrefix } from './internal/store-options.js'
import type { RedisClient } from './rate-limit-store.js'

/** Options of {@link RedisBreakerStateStore}. */
export interface RedisBreakerStateStoreOptions {
  /** Your ioredis `Redis` or `Cluster` client. The store never connects, quits or reconfigures it. Required. */
  client: RedisClient
  /** Prepended to every key. Default `"bw:"`. Must not contain `{` or `}`. */
  prefix?: string
}

/**
 * KEYS[1] the breaker's key; ARGV[1] ms to stay open, or "" to read. Answers the ms the breaker stays open (0 when
 * closed). Opening keeps the later of the stored and the new open-until time; the key expires with it.
 */
const BREAKER_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[1] ~= '' then
  local wanted = now + tonumber(ARGV[1])
  if wanted > untilMs then
    untilMs = wanted
    redis.call('SET', KEYS[1], untilMs, 'PX', tonumber(ARGV[1]) + 1000)
  end
end
local left = untilMs - now
if left < 0 then left = 0 end
return left
`

const COMMAND = `breakwaterBreaker_${createHash('sha1').update(BREAKER_LUA).digest('hex').slice(0, 10)}`
type ScriptCommand = (key: string, durationMs: string) => Promise<number>

/**
 * Circuit-breaker state on Redis, for breakers shared by several processes: when one process opens the breaker of
 * a name, the others stop calling within their `shareIntervalMs` (they read the open-until time at most once per
 * interval, never on every call). Counting stays in each process. One script call per open or read; time comes
 * from Redis (`TIME`), so process clocks cannot skew it; one key per breaker (`<prefix>{cb:<name>}`), so it
 * works on Redis Cluster.
 *
 * @example
 * import { createCircuitBreaker } from '@breakwater/core'
 * import { RedisBreakerStateStore } from '@breakwater/redis'
 * import { Redis } from 'ioredis'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1 })
 * export const payments = createCircuitBreaker({ name: 'payments', store: new RedisBreakerStateStore({ client }) })
 */
export class RedisBreakerStateStore implements BreakerStateStore {
  /** The key prefix in use. */
  readonly prefix: string
  readonly #command: ScriptCommand

  constructor(options: RedisBreakerStateStoreOptions) {
    const client = checkClient(options, 'RedisBreakerStateStore')
    this.prefix = checkPrefix(options.prefix)
    this.#command = scriptCommand<ScriptCommand>(client, COMMAND, BREAKER_LUA)
  }

  async open(name: string, durationMs: number): Promise<void> {
    await this.#command(this.#key(name), String(Math.max(1, Math.ceil(durationMs))))
  }

  async openRemainingMs(name: string): Promise<number> {
    return Number(await this.#command(this.#key(name), ''))
  }

  #key(name: string): string {
    return `${taggedKey(this.prefix, `cb:${name}`)}}`
  }
}
