// The default in-process idempotency store: bounded by a key cap and a byte cap (second-chance LRU eviction),
// expired lazily on access (no per-key timers), timed by a monotonic clock. Every call is synchronous.

import { InvalidOptionError } from '../errors.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { knownOptions, optionKeys, positiveInteger } from '../internal/validate.js'
import type { ClaimResult, IdempotencyRecord, IdempotencyStore, StoredResponse } from './types.js'

/** Options of {@link MemoryIdempotencyStore}. */
export interface MemoryIdempotencyStoreOptions {
  /** Most keys kept (in progress and completed); the least recently used is evicted beyond it. Default `10_000`. */
  maxKeys?: number
  /** Most bytes of stored bodies and headers kept; least recently used records go first. Default 64 MiB. */
  maxBytes?: number
  /** Millisecond clock; only differences matter. Default: monotonic `performance.now()`. For tests. */
  now?: Clock
}

interface Entry {
  fingerprint: string
  /** Owner token while in progress; `undefined` once completed. */
  token: string | undefined
  response: StoredResponse | undefined
  /** In progress: clock value at which the lock lapses (see {@link IdempotencyStore} on lapsed locks). */
  lockUntil: number
  /** In progress: the lapsed lock was already renewed once; the next claim past `lockUntil` takes the key. */
  renewed: boolean
  /** Clock value at which the entry is dropped: the record's lifetime, or the most an in-progress key is kept. */
  expiresAt: number
  /** Approximate bytes held, counted against `maxBytes`. */
  bytes: number
  /** Used since it was last passed over for eviction (second-chance LRU). */
  used: boolean
}

/** Fixed cost of an entry beyond its body: key, fingerprint, token, object overhead. */
const ENTRY_OVERHEAD = 256
const CLAIMED: ClaimResult = Object.freeze({ state: 'claimed' })

/** Every option of MemoryIdempotencyStore; any other key is an error naming it. */
const OPTIONS = optionKeys<MemoryIdempotencyStoreOptions>()(['maxKeys', 'maxBytes', 'now'])

/**
 * In-process idempotency store. Bounded by `maxKeys` and `maxBytes` (least recently used records are evicted
 * first); expired locks and records are dropped when touched or evicted, with no timers. Each process has its own
 * records — use `RedisIdempotencyStore` from `@breakwater/redis` when several processes serve the same clients.
 *
 * @example
 * const store = new MemoryIdempotencyStore({ maxKeys: 50_000, maxBytes: 128 * 1024 * 1024 })
 * app.post('/orders', idempotency({ store, scope: (req) => req.header('authorization') }), createOrder)
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly local = true
  readonly #entries = new Map<string, Entry>()
  readonly #maxKeys: number
  readonly #maxBytes: number
  readonly #now: Clock
  #bytes = 0

  constructor(options: MemoryIdempotencyStoreOptions = {}) {
    knownOptions('MemoryIdempotencyStore', options, OPTIONS)
    this.#maxKeys = positiveInteger('maxKeys', options.maxKeys ?? 10_000)
    this.#maxBytes = positiveInteger('maxBytes', options.maxBytes ?? 64 * 1024 * 1024)
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new InvalidOptionError('now', options.now, 'a function returning milliseconds')
    }
    this.#now = options.now ?? monotonicNow
  }

  /** Number of keys held (expired ones included until touched or evicted). */
  get size(): number {
    return this.#entries.size
  }

  /** Approximate bytes held by stored responses. */
  get bytes(): number {
    return this.#bytes
  }

  claim(key: string, fingerprint: string, token: string, lockTtlMs: number, recordTtlMs = 0): ClaimResult {
    const now = this.#now()
    const entry = this.#live(key, now)
    if (entry !== undefined) {
      entry.used = true
      if (entry.response !== undefined || now < entry.lockUntil) return toRecord(entry, now)
      entry.lockUntil = now + lockTtlMs
      if (!entry.renewed) {
        entry.renewed = true // lapsed: one more lock period for its owner to write its result
        return toRecord(entry, now)
      }
      entry.renewed = false // lapsed twice: the owner is gone, this claim takes the key over
      entry.token = token
      entry.fingerprint = fingerprint
      entry.expiresAt = now + Math.max(recordTtlMs, 2 * lockTtlMs)
      return CLAIMED
    }
    this.#insert(key, {
      fingerprint,
      token,
      response: undefined,
      lockUntil: now + lockTtlMs,
      renewed: false,
      expiresAt: now + Math.max(recordTtlMs, 2 * lockTtlMs),
      bytes: ENTRY_OVERHEAD + key.length,
      used: false,
    })
    this.#evict(now)
    return CLAIMED
  }

  complete(key: string, token: string, response: StoredResponse, recordTtlMs: number): boolean {
    const now = this.#now()
    const entry = this.#live(key, now)
    if (entry === undefined || entry.token !== token) return false
    const bytes = ENTRY_OVERHEAD + key.length + sizeOf(response)
    this.#bytes += bytes - entry.bytes
    entry.token = undefined
    entry.response = response
    entry.bytes = bytes
    entry.expiresAt = now + recordTtlMs
    this.#evict(now)
    return true
  }

  extend(key: string, token: string, lockTtlMs: number): boolean {
    const now = this.#now()
    const entry = this.#live(key, now)
    if (entry === undefined || entry.response !== undefined || entry.token !== token) return false
    entry.lockUntil = now + lockTtlMs
    entry.renewed = false
    if (entry.expiresAt < entry.lockUntil) entry.expiresAt = entry.lockUntil
    return true
  }

  release(key: string, token: string): boolean {
    const entry = this.#live(key, this.#now())
    if (entry === undefined || entry.token !== token) return false
    this.#delete(key, entry)
    return true
  }

  get(key: string): IdempotencyRecord | undefined {
    const now = this.#now()
    const entry = this.#live(key, now)
    return entry === undefined ? undefined : toRecord(entry, now)
  }

  shutdown(): void {
    this.#entries.clear()
    this.#bytes = 0
  }

  /** The entry of `key` unless it expired (then it is dropped). */
  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (now < entry.expiresAt) return entry
    this.#delete(key, entry)
    return undefined
  }

  #insert(key: string, entry: Entry): void {
    this.#entries.set(key, entry)
    this.#bytes += entry.bytes
  }

  #delete(key: string, entry: Entry): void {
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
  }

  /**
   * Second-chance eviction from the oldest insertion: expired entries go, entries used since the last pass move
   * to the back once, the first unused one is evicted. A hit only sets a flag, so reads never reorder the map.
   */
  #evict(now: number): void {
    if (this.#entries.size <= this.#maxKeys && this.#bytes <= this.#maxBytes) return
    let budget = this.#entries.size * 2
    for (const [key, entry] of this.#entries) {
      if ((this.#entries.size <= this.#maxKeys && this.#bytes <= this.#maxBytes) || budget-- <= 0) return
      this.#delete(key, entry)
      if (entry.used && now < entry.expiresAt) {
        entry.used = false
        this.#insert(key, entry)
      }
    }
  }
}

function toRecord(entry: Entry, now: number): IdempotencyRecord {
  if (entry.response === undefined) {
    return { state: 'in_progress', fingerprint: entry.fingerprint, lockExpiresInMs: Math.max(0, entry.lockUntil - now) }
  }
  return { state: 'completed', fingerprint: entry.fingerprint, response: entry.response }
}

function sizeOf(response: StoredResponse): number {
  let bytes = response.body.length
  for (const [name, value] of response.headers) bytes += name.length + value.length
  return bytes
}
