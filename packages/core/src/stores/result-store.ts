// Where stale-if-error keeps the last good result of each cache key: the interface every backend implements,
// and the bounded in-process one (entry count, total size, TTL; least recently used out first).

import { InvalidOptionError } from '../errors.js'
import { evictOverflow } from '../internal/lru.js'
import { knownOptions, optionKeys, positiveInteger } from '../internal/validate.js'

/** One stored result: the JSON text stale-if-error wrote and when it was written. */
export interface StoredResult {
  /** The JSON text given to `set`, unchanged. */
  value: string
  /** When it was stored, as a Unix epoch in ms on this process's clock (`Date.now()`). */
  storedAt: number
}

/**
 * Where stale-if-error keeps last good results. Values are JSON text (stale-if-error serialises and parses; a
 * store only keeps strings), so any key-value backend can hold them. `get` answers `undefined` for a missing,
 * expired, corrupt or foreign entry — never throws for one. Calls are bounded in time by the policy.
 *
 * @example
 * class MapResultStore implements ResultStore {
 *   readonly #map = new Map<string, StoredResult>()
 *   async get(key: string) { return this.#map.get(key) }
 *   async set(key: string, value: string) { this.#map.set(key, { value, storedAt: Date.now() }) }
 * }
 */
export interface ResultStore {
  /** True for an in-process store (its calls are not time-bounded). */
  readonly local?: boolean
  /** The entry of `key`, or `undefined` when there is none usable. */
  get(key: string): Promise<StoredResult | undefined>
  /** Store `value` under `key` for `ttlMs`, replacing what was there; its `storedAt` is now. */
  set(key: string, value: string, ttlMs: number): Promise<void>
}

/** Options of {@link MemoryResultStore}. */
export interface MemoryResultStoreOptions {
  /** Most entries kept; the least recently used is evicted beyond it. Default `1000`. */
  maxEntries?: number
  /**
   * Most bytes of values kept (counted as 2 per UTF-16 unit, what V8 holds at most); least recently used evicted
   * first. A single value larger than this is not stored. Default `16_777_216` (16 MiB).
   */
  maxBytes?: number
  /** Unix-epoch ms clock, for tests. Default `Date.now`. */
  now?: () => number
}

const OPTIONS = optionKeys<MemoryResultStoreOptions>()(['maxEntries', 'maxBytes', 'now'])

interface Entry extends StoredResult {
  readonly expiresAt: number
  readonly bytes: number
}

/**
 * The default result store of stale-if-error: in process, bounded by entry count and total size (least
 * recently used evicted first), entries dropped once their TTL has passed (lazily, no timers). Each process has
 * its own results — use `RedisResultStore` from `@breakwater/redis` so every instance can serve what any of them
 * stored.
 *
 * @example
 * import { createStaleIfError, MemoryResultStore } from '@breakwater/core'
 *
 * export const stock = createStaleIfError({ name: 'stock', store: new MemoryResultStore({ maxEntries: 500 }) })
 */
export class MemoryResultStore implements ResultStore {
  readonly local = true
  readonly #entries = new Map<string, Entry>()
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #now: () => number
  #bytes = 0

  constructor(options: MemoryResultStoreOptions = {}) {
    knownOptions('MemoryResultStore', options, OPTIONS)
    this.#maxEntries = positiveInteger('maxEntries', options.maxEntries ?? 1000)
    this.#maxBytes = positiveInteger('maxBytes', options.maxBytes ?? 16 * 1024 * 1024)
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new InvalidOptionError('now', options.now, 'a function returning Unix-epoch milliseconds')
    }
    this.#now = options.now ?? Date.now
  }

  /** Entries held (expired ones included until read or evicted). */
  get size(): number {
    return this.#entries.size
  }

  /** Bytes of values held, as counted for `maxBytes`. */
  get bytes(): number {
    return this.#bytes
  }

  get(key: string): Promise<StoredResult | undefined> {
    const entry = this.#entries.get(key)
    if (entry === undefined) return Promise.resolve(undefined)
    this.#entries.delete(key)
    if (this.#now() >= entry.expiresAt) {
      this.#bytes -= entry.bytes
      return Promise.resolve(undefined)
    }
    // Re-inserted: the Map's order is recency of use, so the first key is the one to evict.
    this.#entries.set(key, entry)
    return Promise.resolve({ value: entry.value, storedAt: entry.storedAt })
  }

  set(key: string, value: string, ttlMs: number): Promise<void> {
    const previous = this.#entries.get(key)
    if (previous !== undefined) {
      this.#entries.delete(key)
      this.#bytes -= previous.bytes
    }
    const bytes = 2 * value.length
    if (bytes > this.#maxBytes || !(ttlMs > 0)) return Promise.resolve()
    const storedAt = this.#now()
    this.#entries.set(key, { value, storedAt, expiresAt: storedAt + ttlMs, bytes })
    this.#bytes += bytes
    evictOverflow(this.#entries, this.#maxEntries, this.#evicted, this.#overBudget)
    return Promise.resolve()
  }

  readonly #evicted = (entry: Entry): void => {
    this.#bytes -= entry.bytes
  }

  readonly #overBudget = (): boolean => this.#bytes > this.#maxBytes
}
