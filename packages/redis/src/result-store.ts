// RedisResultStore: the last good results of stale-if-error, shared by every instance on one Redis (or Cluster),
// so whichever instance meets the outage can serve what any of them stored. Ages come from Redis's clock.

import { createHash } from 'node:crypto'
import type { ResultStore, StoredResult } from '@breakwater/core'
import type { Redis } from 'ioredis'
import { taggedKey } from './internal/key-layout.js'
import { checkClient, checkPrefix } from './internal/store-options.js'
import type { RedisClient } from './rate-limit-store.js'

/** Options of {@link RedisResultStore}. */
export interface RedisResultStoreOptions {
  /** Your ioredis `Redis` or `Cluster` client. The store never connects, quits or reconfigures it. Required. */
  client: RedisClient
  /** Prepended to every key. Default `"bw:"`. Must not contain `{` or `}`. */
  prefix?: string
}

/** The entry's tag and version: anything else under a key is foreign and reads as a miss. */
const TAG = 'bw1 '

/**
 * KEYS[1] the entry's key. ARGV[1] `set` (ARGV[2] the JSON text, ARGV[3] ms to keep it) or `get`. Entries are
 * `bw1 <stored-at ms on Redis's clock> <JSON text>`. `get` answers `{ now, entry }`, or `{ now }` when the key is
 * missing or not a string (`pcall`: a foreign hash or list is a miss, not an error).
 */
const RESULT_LUA = `
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
if ARGV[1] == 'set' then
  redis.call('SET', KEYS[1], '${TAG}' .. now .. ' ' .. ARGV[2], 'PX', ARGV[3])
  return now
end
local entry = redis.pcall('GET', KEYS[1])
if type(entry) ~= 'string' then return { now } end
return { now, entry }
`

const COMMAND = `breakwaterResult_${createHash('sha1').update(RESULT_LUA).digest('hex').slice(0, 10)}`
type ScriptCommand = (key: string, operation: string, value?: string, ttlMs?: string) => Promise<unknown>

/**
 * Stale-if-error's result store on Redis: every instance of a service reads the results any of them stored, so
 * the instance that meets an outage can answer with what another one fetched a minute ago. One script call per
 * read or write on your ioredis client (single node or Cluster: one key per entry, `<prefix>{<key>}:result`),
 * kept with `PX` for the policy's `ttlMs`. The stored-at time and the age are read on Redis's clock, so the
 * instances' clocks cannot skew an age. An entry that is not one of ours (written by something else, corrupt,
 * another type) reads as a miss. Calls are bounded by the policy's `storeTimeoutMs`; a failing Redis never
 * fails a call.
 *
 * @example
 * import { createStaleIfError } from '@breakwater/core'
 * import { RedisResultStore } from '@breakwater/redis'
 * import { Redis } from 'ioredis'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true })
 * export const inventory = createStaleIfError({
 *   name: 'inventory',
 *   store: new RedisResultStore({ client }),
 *   maxStaleMs: '5m',
 * })
 */
export class RedisResultStore implements ResultStore {
  /** The key prefix in use. */
  readonly prefix: string
  readonly #command: ScriptCommand

  constructor(options: RedisResultStoreOptions) {
    const client = checkClient(options, 'RedisResultStore')
    this.prefix = checkPrefix(options.prefix)
    const commands = client as unknown as Record<string, unknown>
    if (typeof commands[COMMAND] !== 'function') {
      ;(client as Redis).defineCommand(COMMAND, { numberOfKeys: 1, lua: RESULT_LUA })
    }
    this.#command = (commands[COMMAND] as ScriptCommand).bind(client)
  }

  async get(key: string): Promise<StoredResult | undefined> {
    return decode(await this.#command(this.#key(key), 'get'))
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#command(this.#key(key), 'set', value, String(Math.max(1, Math.ceil(ttlMs))))
  }

  #key(key: string): string {
    return `${taggedKey(this.prefix, key)}}:result`
  }
}

/** An entry as this process's clock sees it: stored `age` ms ago by Redis's clock. Anything else is a miss. */
function decode(reply: unknown): StoredResult | undefined {
  if (!Array.isArray(reply) || reply.length !== 2) return undefined
  const [now, entry] = reply as [unknown, unknown]
  if (typeof entry !== 'string' || !entry.startsWith(TAG)) return undefined
  const space = entry.indexOf(' ', TAG.length)
  if (space < 0) return undefined
  const storedAt = Number(entry.slice(TAG.length, space))
  const redisNow = Number(now)
  if (!Number.isSafeInteger(storedAt) || !Number.isSafeInteger(redisNow)) return undefined
  return { value: entry.slice(space + 1), storedAt: Date.now() - Math.max(0, redisNow - storedAt) }
}
