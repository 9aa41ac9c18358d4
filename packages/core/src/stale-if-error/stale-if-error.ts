// Stale-if-error: every good result of a call is kept under its cache key; when a later call fails, the last good
// result is served instead (with its age), as long as it is not older than the policy allows.

import { InvalidOptionError } from '../errors.js'
import { channels, publish, publishStoreError, type StaleServedEvent } from '../events.js'
import { compose, type ExecuteOptions, type Policy, type Work } from '../execute/policy.js'
import { type Served, type ServeNext, servedUpstream, servedValue } from '../execute/served.js'
import {
  type FailureFilter,
  type FallbackReason,
  failureFilter,
  failureReason,
  notToSubstitute,
} from '../fallback/reason.js'
import { monotonicNow } from '../internal/clock.js'
import { type Duration, duration, knownOptions, optionKeys, policyName, positiveInteger } from '../internal/validate.js'
import { warnOnce } from '../internal/warn.js'
import { boundKey } from '../rate-limit/client-key.js'
import { MemoryResultStore, type ResultStore, type StoredResult } from '../stores/result-store.js'
import { StoreGuard } from '../stores/store-guard.js'

/** Options of {@link createStaleIfError}. */
export interface StaleIfErrorOptions {
  /** Names it in events and store keys (`<name>:<cacheKey>`). Default `"stale-if-error"`. */
  name?: string
  /** Where last good results live. Default: a new `MemoryResultStore()` (1000 entries, 16 MiB). */
  store?: ResultStore
  /** The oldest result that may still be served (ms or `"5m"`). Default `60_000` (1 minute). */
  maxStaleMs?: Duration
  /** How long a stored result is kept at all; at least `maxStaleMs`. Default: `maxStaleMs`. */
  ttlMs?: Duration
  /**
   * Which failures get a stale answer: a list of reasons (`circuit-open`, `bulkhead-full`, `timeout`,
   * `retries-exhausted`, `error`) or a predicate on the error. Default: every reason. The caller's own abort is
   * never one.
   */
  on?: FailureFilter
  /** Time limit of each call to a remote store (a local store is not bounded). Default `100` ms. */
  storeTimeoutMs?: Duration
  /** Results whose JSON is longer than this many bytes (2 per UTF-16 unit) are not stored. Default `1_048_576`. */
  maxValueBytes?: number
  /** Unix-epoch ms clock for ages, for tests. Default `Date.now`. */
  now?: () => number
}

const KEYS = optionKeys<StaleIfErrorOptions>()([
  'name',
  'store',
  'maxStaleMs',
  'ttlMs',
  'on',
  'storeTimeoutMs',
  'maxValueBytes',
  'now',
])

const bare = compose()

/**
 * Create a stale-if-error policy. Each call names its cache key (`{ cacheKey }` in the execute options; missing
 * it is an `InvalidOptionError`). A call that succeeds stores its value under the key (every success refreshes
 * it; the write is not awaited, and its failure never fails the call). A call that fails for a reason in `on`
 * is answered with the stored value if it is at most `maxStaleMs` old, and `run` says so (`source: 'stale'`,
 * `ageMs`); with nothing fresh enough stored, the call's own error is thrown. The caller's own abort is rethrown,
 * never answered. Values go through JSON: store plain data (parsed bodies), not a `Response`; class instances,
 * `Map`s and the like are not stored (a one-time `BW_STALE_UNSTORABLE` warning says so). A corrupt or foreign
 * entry is a miss. Each stale answer is published on `breakwater:stale:served`, store failures on
 * `breakwater:store:error`.
 *
 * @example
 * import { createStaleIfError } from '@breakwater/core'
 *
 * const stock = createStaleIfError({ name: 'stock', maxStaleMs: '5m' })
 * export async function stockOf(sku: string, signal: AbortSignal) {
 *   const served = await stock.run(
 *     async (ctx) => (await fetch(`http://127.0.0.1:4000/stock/${sku}`, { signal: ctx.signal })).json(),
 *     { signal, cacheKey: sku },
 *   )
 *   return { data: served.value, stale: served.source === 'stale', ageMs: served.ageMs }
 * }
 */
export function createStaleIfError(options: StaleIfErrorOptions = {}): StaleIfError {
  return new StaleIfError(options)
}

/** A stale-if-error policy. Create one with {@link createStaleIfError}. */
export class StaleIfError implements Policy {
  readonly name: string
  readonly store: ResultStore
  readonly maxStaleMs: number
  readonly ttlMs: number
  readonly #accepts: (reason: FallbackReason, error: unknown) => boolean
  readonly #guard: StoreGuard | undefined
  readonly #maxValueBytes: number
  readonly #now: () => number
  /** Keys with a write in flight: one at a time per key, so a burst of successes is one write, not hundreds. */
  readonly #writing = new Set<string>()

  constructor(options: StaleIfErrorOptions = {}) {
    knownOptions('staleIfError', options, KEYS)
    this.name = policyName('name', options.name ?? 'stale-if-error')
    const store = options.store ?? new MemoryResultStore()
    if (typeof store?.get !== 'function' || typeof store.set !== 'function') {
      throw new InvalidOptionError('store', store, 'a ResultStore (get and set)')
    }
    this.store = store
    this.maxStaleMs = duration('maxStaleMs', options.maxStaleMs ?? 60_000)
    this.ttlMs = options.ttlMs === undefined ? this.maxStaleMs : duration('ttlMs', options.ttlMs)
    if (this.ttlMs < this.maxStaleMs) {
      throw new InvalidOptionError('ttlMs', options.ttlMs, `at least maxStaleMs (${this.maxStaleMs} ms)`)
    }
    this.#accepts = failureFilter('on', options.on)
    const storeTimeoutMs = duration('storeTimeoutMs', options.storeTimeoutMs ?? 100)
    this.#guard = store.local === true ? undefined : new StoreGuard(storeTimeoutMs)
    this.#maxValueBytes = positiveInteger('maxValueBytes', options.maxValueBytes ?? 1024 * 1024)
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new InvalidOptionError('now', options.now, 'a function returning Unix-epoch milliseconds')
    }
    this.#now = options.now ?? Date.now
  }

  /** Run `work`; its value, or the last good value of `options.cacheKey` when it failed. */
  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return this.run(work, options).then(servedValue)
  }

  /** Run `work` and say where the answer came from (`upstream` or `stale`, with its age). */
  run<T>(work: Work<T>, options?: ExecuteOptions): Promise<Served<T>> {
    return this.serve(() => bare.execute(work, options).then(servedUpstream), options)
  }

  /**
   * @internal As a layer of a stack: store what `next` (the layers below) produced, answer for it when it fails.
   * Only `upstream` answers are stored; others pass through. Put a fallback outside this layer, not inside it:
   * then a stored result is preferred and the fallback answers only when there is none.
   */
  serve<T>(next: ServeNext<T>, options: ExecuteOptions | undefined): Promise<Served<T>> {
    const cacheKey = options?.cacheKey
    if (typeof cacheKey !== 'string' || cacheKey.length === 0) {
      return Promise.reject(
        new InvalidOptionError('cacheKey', cacheKey, `a non-empty string: "${this.name}" stores results by it`),
      )
    }
    const key = boundKey(`${this.name}:${cacheKey}`)
    return next().then(
      (served) => {
        if (served.source === 'upstream') this.#remember(key, served.value)
        return served
      },
      (error: unknown) => this.#stale<T>(key, error, options),
    )
  }

  /** The stored result of `key` if the failure qualifies and it is fresh enough; else the failure. */
  async #stale<T>(key: string, error: unknown, options: ExecuteOptions | undefined): Promise<Served<T>> {
    if (notToSubstitute(error, options)) throw error
    const reason = failureReason(error)
    if (this.#accepts(reason, error)) {
      const entry = await this.#read(key)
      if (entry !== undefined) {
        const ageMs = Math.max(0, this.#now() - entry.storedAt)
        if (ageMs <= this.maxStaleMs) {
          const value = parse(entry.value)
          if (value !== MISS) {
            if (channels.staleServed.hasSubscribers) {
              publish(channels.staleServed, { policy: this.name, ageMs, reason } satisfies StaleServedEvent)
            }
            return { value: value as T, source: 'stale', ageMs, error }
          }
        }
      }
    }
    throw error
  }

  /** The entry of `key`, or undefined when there is none or the store failed (reported, never thrown). */
  #read(key: string): Promise<StoredResult | undefined> {
    const store = this.store
    const guard = this.#guard
    const started = channels.storeError.hasSubscribers ? monotonicNow() : 0
    let read: Promise<StoredResult | undefined>
    try {
      read = Promise.resolve(guard === undefined ? store.get(key) : guard.run('get', () => store.get(key)))
    } catch (error) {
      read = Promise.reject(error)
    }
    return read.then(
      (entry) => (isStoredResult(entry) ? entry : undefined),
      (error: unknown) => {
        publishStoreError(this.name, 'get', error, 'fail-open', elapsedSeconds(started))
        return undefined
      },
    )
  }

  /** Store `value` under `key` in the background; a failure is reported, never thrown. */
  #remember(key: string, value: unknown): void {
    if (this.#writing.has(key)) return
    const text = serialise(value)
    if (text === undefined) {
      warnOnce(
        'BW_STALE_UNSTORABLE',
        `stale-if-error "${this.name}" got a result that is not plain JSON data (a class instance such as a Response, a Map, a function or undefined), so it was not stored. Return parsed data from the work.`,
        undefined,
        `BW_STALE_UNSTORABLE:${this.name}`,
      )
      return
    }
    if (2 * text.length > this.#maxValueBytes) {
      warnOnce(
        'BW_STALE_TOO_LARGE',
        `stale-if-error "${this.name}" got a result larger than maxValueBytes (${this.#maxValueBytes}), so it was not stored.`,
        undefined,
        `BW_STALE_TOO_LARGE:${this.name}`,
      )
      return
    }
    const store = this.store
    const guard = this.#guard
    const ttlMs = this.ttlMs
    const started = channels.storeError.hasSubscribers ? monotonicNow() : 0
    let write: Promise<void>
    try {
      write = Promise.resolve(
        guard === undefined ? store.set(key, text, ttlMs) : guard.run('set', () => store.set(key, text, ttlMs)),
      )
    } catch (error) {
      write = Promise.reject(error)
    }
    this.#writing.add(key)
    write.then(
      () => this.#writing.delete(key),
      (error: unknown) => {
        this.#writing.delete(key)
        publishStoreError(this.name, 'set', error, 'fail-open', elapsedSeconds(started))
      },
    )
  }
}

const MISS = Symbol('miss')

/** JSON text of plain data; undefined for anything JSON would silently mangle (a Response becomes `{}`). */
function serialise(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, plainOnly)
  } catch {
    return undefined
  }
}

function plainOnly(_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const prototype = Object.getPrototypeOf(value)
    if (prototype !== Object.prototype && prototype !== null) throw new TypeError('not plain data')
  }
  return value
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return MISS
  }
}

function isStoredResult(entry: unknown): entry is StoredResult {
  return (
    typeof entry === 'object' &&
    entry !== null &&
    typeof (entry as StoredResult).value === 'string' &&
    Number.isFinite((entry as StoredResult).storedAt)
  )
}

function elapsedSeconds(started: number): number {
  return started === 0 ? 0 : (monotonicNow() - started) / 1000
}
