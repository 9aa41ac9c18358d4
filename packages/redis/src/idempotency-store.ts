// RedisIdempotencyStore: idempotency records shared by every process that talks to one Redis (or Cluster).
// Claim, complete, release and get are each one EVALSHA of one Lua script, on the user's own ioredis client.

import { createHash } from 'node:crypto'
import type { ClaimResult, IdempotencyRecord, IdempotencyStore, StoredResponse } from '@breakwater/core'
import type { Redis } from 'ioredis'
import { IDEMPOTENCY_LUA } from './internal/idempotency-script.js'
import { taggedKey } from './internal/key-layout.js'
import { checkClient, checkPrefix } from './internal/store-options.js'
import type { RedisClient } from './rate-limit-store.js'

/** Options of {@link RedisIdempotencyStore}. */
export interface RedisIdempotencyStoreOptions {
  /** Your ioredis `Redis` or `Cluster` client. The store never connects, quits or reconfigures it. Required. */
  client: RedisClient
  /** Prepended to every key. Default `"bw:"`. Must not contain `{` or `}` (they would steal the hash tag). */
  prefix?: string
}

type ScriptCommand = (...args: unknown[]) => Promise<unknown>

/** Per script version: two package copies on one client never run each other's script under one name. */
const COMMAND = `breakwaterIdempotency_${createHash('sha1').update(IDEMPOTENCY_LUA).digest('hex').slice(0, 10)}`
const SUFFIX = '}:idempotency'
const CLAIMED: ClaimResult = Object.freeze({ state: 'claimed' })

/**
 * Idempotency store on Redis, for keys shared by several processes or hosts: among concurrent duplicates on any
 * number of processes exactly one claims the key. Each call is one Lua script call (EVALSHA); complete, extend
 * and release compare the owner token inside Redis. A record is one hash under `<prefix>{<key>}:idempotency`;
 * while in progress its lock deadline is a field on Redis's clock (a lapsed lock is renewed once before anyone
 * may take the key over, see `IdempotencyStore`), once completed its TTL is the record lifetime. It works on
 * Redis Cluster. Bodies are stored as bytes.
 *
 * It uses your ioredis client and never opens or closes connections. Recommended client settings:
 * `enableOfflineQueue: false`, `maxRetriesPerRequest: 1`, `enableAutoPipelining: true`. Every call is also bounded
 * by the policy's `storeTimeoutMs` and its `onStoreError` policy.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { RedisIdempotencyStore } from '@breakwater/redis'
 * import { createIdempotency } from '@breakwater/core'
 *
 * const client = new Redis({ enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true })
 * const policy = createIdempotency({ store: new RedisIdempotencyStore({ client }), scope: (req) => userOf(req) })
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  readonly local = false
  /** The key prefix in use. */
  readonly prefix: string
  /** The script with string replies (complete, release). */
  readonly #command: ScriptCommand
  /** The script with Buffer replies (claim, get), so stored bodies come back byte for byte. */
  readonly #commandBuffer: ScriptCommand

  constructor(options: RedisIdempotencyStoreOptions) {
    const client = checkClient(options, 'RedisIdempotencyStore')
    const prefix = checkPrefix(options.prefix)
    this.prefix = prefix
    const commands = client as unknown as Record<string, ScriptCommand | undefined>
    // Defined once per client: other stores on the same client reuse it.
    if (typeof commands[COMMAND] !== 'function') {
      ;(client as Redis).defineCommand(COMMAND, { numberOfKeys: 1, lua: IDEMPOTENCY_LUA })
    }
    this.#command = (commands[COMMAND] as ScriptCommand).bind(client)
    this.#commandBuffer = (commands[`${COMMAND}Buffer`] as ScriptCommand).bind(client)
  }

  claim(key: string, fingerprint: string, token: string, lockTtlMs: number, recordTtlMs = 0): Promise<ClaimResult> {
    const lock = Math.ceil(lockTtlMs)
    // The key's TTL only bounds how long an unfinished record is kept; the lock is its `d` field (see the script).
    const keep = Math.max(Math.ceil(recordTtlMs), 2 * lock)
    return this.#commandBuffer(this.#key(key), 'claim', token, fingerprint, lock, keep).then(toClaim)
  }

  complete(key: string, token: string, response: StoredResponse, recordTtlMs: number): Promise<boolean> {
    const meta = JSON.stringify([response.status, response.headers])
    return this.#command(this.#key(key), 'complete', token, meta, response.body, Math.ceil(recordTtlMs)).then(isOne)
  }

  extend(key: string, token: string, lockTtlMs: number): Promise<boolean> {
    return this.#command(this.#key(key), 'extend', token, Math.ceil(lockTtlMs)).then(isOne)
  }

  release(key: string, token: string): Promise<boolean> {
    return this.#command(this.#key(key), 'release', token).then(isOne)
  }

  get(key: string): Promise<IdempotencyRecord | undefined> {
    return this.#commandBuffer(this.#key(key), 'get').then(toRecord)
  }

  /** Nothing to release: the client is yours, and stays open. */
  shutdown(): void {}

  #key(key: string): string {
    return taggedKey(this.prefix, key) + SUFFIX
  }
}

function isOne(reply: unknown): boolean {
  return reply === 1
}

function toClaim(reply: unknown): ClaimResult {
  if (Array.isArray(reply) && reply.length === 1 && String(reply[0]) === 'claimed') return CLAIMED
  const record = toRecord(reply)
  if (record === undefined) throw new Error('Unexpected empty reply from the idempotency claim script')
  return record
}

function toRecord(reply: unknown): IdempotencyRecord | undefined {
  if (!Array.isArray(reply)) throw new Error(`Unexpected reply from the idempotency script: ${String(reply)}`)
  if (reply.length === 0) return undefined
  const state = String(reply[0])
  const fingerprint = String(reply[1] ?? '')
  if (state === 'p') return { state: 'in_progress', fingerprint, lockExpiresInMs: Math.max(0, Number(reply[2])) }
  if (state !== 'c') throw new Error(`Unexpected record state from the idempotency script: ${state}`)
  const [status, headers] = JSON.parse(String(reply[2])) as [number, Array<[string, string]>]
  const body = Buffer.isBuffer(reply[3]) ? reply[3] : Buffer.from(String(reply[3] ?? ''))
  return { state: 'completed', fingerprint, response: { status, headers, body } }
}
