// The idempotency policy: reads and validates the Idempotency-Key, claims the scoped key atomically in the store,
// and answers execute (with a ticket that stores or releases the response), replay, or a problem+json rejection.
// Synchronous end to end on in-process stores, so a replay from memory costs no microtask hop.

import { isUtf8 } from 'node:buffer'
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { CONTINUE, type ContinueDecision, isPromiseLike, type MaybePromise, type RejectDecision } from '../decision.js'
import { ErrorCode, InvalidOptionError } from '../errors.js'
import { channels, publish, publishStoreError, type StoreErrorEvent } from '../events.js'
import { monotonicNow } from '../internal/clock.js'
import {
  type Duration,
  duration,
  knownOptions,
  nonNegativeNumber,
  oneOf,
  optionKeys,
  positiveInteger,
} from '../internal/validate.js'
import { type WarningLogger, warnOnce } from '../internal/warn.js'
import { PROBLEM_CONTENT_TYPE, type ProblemDetails } from '../problem.js'
import type { HeaderList, RequestView } from '../request-view.js'
import { StoreGuard } from '../stores/store-guard.js'
import type { IdempotencyDecisionEvent, IdempotencySettledEvent } from './events.js'
import { type Fingerprinter, type FingerprintOptions, fingerprinter, OVER_LIMIT } from './fingerprint.js'
import { parseIdempotencyKey } from './key-header.js'
import { MemoryIdempotencyStore } from './memory-idempotency-store.js'
import { type CompletionOutcome, type PendingCompletion, PendingCompletions } from './pending-completions.js'
import type { ClaimResult, IdempotencyRecord, IdempotencyStore, ReplayDecision, StoredResponse } from './types.js'

/** Options of {@link createIdempotency} and of every framework adapter's idempotency middleware. */
export interface IdempotencyOptions {
  /** Names the policy in events and namespaces its store keys. Default `"idempotency"`. */
  id?: string
  /** The request header carrying the key. Default `"Idempotency-Key"`. */
  header?: string
  /** Methods the policy covers; other requests pass untouched. Default `['POST', 'PATCH']`. */
  methods?: readonly string[]
  /** Answer 400 (`BW_IDEMPOTENCY_KEY_MISSING`) when a covered request has no key. Default `false`: it passes. */
  required?: boolean
  /**
   * Who the caller is (user, tenant, API key): records are looked up by scope + method + route + key, so two
   * callers using the same key never see each other's responses. Default: one shared scope, with a one-time
   * `BW_IDEMPOTENCY_NO_SCOPE` warning. Return `undefined` for anonymous callers.
   */
  scope?: (request: RequestView) => MaybePromise<string | undefined>
  /**
   * How the request payload is fingerprinted (same key + different payload = 422). Default: a SHA-256 of the
   * body, JSON in canonical form (sorted keys, numbers as written when the raw body is at hand), bounded to 64
   * levels and 1 MiB (past that: 413 `BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX`). Options pick `include`d /
   * `exclude`d top-level fields and the bounds; a function computes the fingerprint itself; `false` disables it.
   */
  fingerprint?: FingerprintOptions | Fingerprinter | false
  /** Default `new MemoryIdempotencyStore()` (per process). Use `RedisIdempotencyStore` across processes. */
  store?: IdempotencyStore
  /**
   * How long a claimed key stays locked while its request runs. A lapsed lock is renewed once by the first
   * duplicate that finds it (so an owner whose store stalled still writes its result first): if the process
   * dies, a retry executes one to two of these after the lapse. Keep it above the route's timeout. Default
   * `30_000` (30 s).
   */
  lockTtlMs?: Duration
  /** How long a stored response is replayed. Default `86_400_000` (24 h). */
  recordTtlMs?: Duration
  /**
   * A duplicate arriving while the first request still runs waits up to this long for it to finish, then gets
   * its response replayed (or 409 if it is still running). Default `0`: answer 409 with `Retry-After` at once.
   */
  waitMs?: number | string
  /** Responses with bodies larger than this are passed through, not stored, and the key released. Default 1 MiB. */
  maxBodyBytes?: number
  /**
   * Response headers stored and replayed (case-insensitive). `Set-Cookie`, `Date` and hop-by-hop headers are
   * refused. Default `['Content-Type', 'Location', 'ETag', 'Link', 'Content-Location', 'Last-Modified']`.
   */
  replayHeaders?: readonly string[]
  /** Header marking a replayed response (value `true`), or `false` for none. Default `"Idempotent-Replayed"`. */
  replayedHeader?: string | false
  /**
   * Which statuses are stored for replay; the others release the key so a retry executes again. Default: 2xx and
   * 4xx except 408, 409 and 429 (transient answers a retry may get past). 5xx and thrown errors are not stored.
   */
  storeStatus?: (status: number) => boolean
  /** Store call timeout in ms. Default `250`. In-process stores are never timed. */
  storeTimeoutMs?: number
  /**
   * When the store fails or times out: `"fail-closed"` (default) answers 503 `BW_STORE_UNAVAILABLE`, because
   * executing without the record could charge twice; `"fail-open"` runs the handler without idempotency.
   */
  onStoreError?: 'fail-closed' | 'fail-open'
  /** Receives one-time configuration warnings. Default `process.emitWarning`. */
  logger?: WarningLogger
}

/**
 * The response of a request that claimed its key, as the adapter captures it: body chunks through `write`,
 * then `finish` (store the response, or release the key), or `abandon` (release the key). The first of
 * `finish`/`abandon` wins; a key is never left in progress by a ticket.
 */
export interface IdempotencyTicket {
  /** Responses larger than this are passed through (the ticket releases the key itself). */
  readonly maxBodyBytes: number
  /** True once the ticket stored or released its key. */
  readonly settled: boolean
  /** Add a chunk of the response body. Returns false once capturing stopped (too large, or settled). */
  write(chunk: unknown, encoding?: BufferEncoding): boolean
  /**
   * The response is complete: store it when its status is storable, else release the key. `header(name)` reads
   * a response header (any casing the framework accepts). A non-buffer `last` (a stream) releases the key.
   * A storable response resolves once the record is written (or, if the store fails, once it is held for
   * background writes and replays in this process), so a retry is replayed, never executed; never rejects.
   * Returns `undefined` when the response may go out at once: released keys and in-process stores.
   */
  finish(
    status: number,
    header: (name: string) => unknown,
    last?: unknown,
    encoding?: BufferEncoding,
  ): MaybePromise<void>
  /** The response will not be stored (thrown error, streamed body, client gone): release the key. */
  abandon(reason: 'error' | 'streamed' | 'too_large' | 'aborted'): void
}

/** The request claimed its key: run the handler and report its response to `ticket`. */
export interface ExecuteDecision {
  readonly action: 'execute'
  readonly ticket: IdempotencyTicket
}

/** What the idempotency policy answers for one request. */
export type IdempotencyDecision = ContinueDecision | ExecuteDecision | RejectDecision | ReplayDecision

/** An idempotency policy usable with or without HTTP. */
export interface Idempotency {
  readonly id: string
  /** True when requests with this method are covered (adapters skip hooks on routes no request can match). */
  covers(method: string): boolean
  /**
   * Decide one request given its parsed body and, when the adapter has it, its raw body (fingerprinted
   * losslessly then): `continue` (not covered, or no key), `execute` (run the handler, report to the ticket),
   * `replay` (send the stored response) or `reject`.
   */
  check(request: RequestView, body: unknown, rawBody?: string | Uint8Array): MaybePromise<IdempotencyDecision>
  /** The store's record for `key` (an Idempotency-Key) as seen by `request`'s scope, method and route. */
  lookup(request: RequestView, key: string): Promise<IdempotencyRecord | undefined>
}

const DEFAULT_ID = 'idempotency'
const DEFAULT_METHODS = ['POST', 'PATCH']
const DEFAULT_REPLAY_HEADERS = ['Content-Type', 'Location', 'ETag', 'Link', 'Content-Location', 'Last-Modified']
/** Never replayed: another response's cookies or date, or headers about one connection (RFC 9110 §7.6.1). */
const FORBIDDEN_REPLAY_HEADERS = new Set([
  'set-cookie',
  'date',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const POLL_MS = 50
const ABOUT_BLANK = 'about:blank'

/** 2xx, and 4xx except 408 (client too slow), 409 (conflict) and 429 (rate limited): a retry may succeed. */
export const defaultStoreStatus = (status: number): boolean =>
  (status >= 200 && status < 300) ||
  (status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 429)

/** Every option of idempotency; any other key is an error naming it. */
const OPTIONS = optionKeys<IdempotencyOptions>()([
  'id',
  'header',
  'methods',
  'required',
  'scope',
  'fingerprint',
  'store',
  'lockTtlMs',
  'recordTtlMs',
  'waitMs',
  'maxBodyBytes',
  'replayHeaders',
  'replayedHeader',
  'storeStatus',
  'storeTimeoutMs',
  'onStoreError',
  'logger',
])

/**
 * Create an idempotency policy. Options are checked here; an invalid one throws {@link InvalidOptionError}.
 * Without a `scope`, one `BW_IDEMPOTENCY_NO_SCOPE` warning is emitted.
 *
 * @example
 * const idempotency = createIdempotency({
 *   scope: (request) => request.header('authorization'),
 *   required: true,
 *   store: new RedisIdempotencyStore({ client }),
 * })
 */
export function createIdempotency(options: IdempotencyOptions = {}): Idempotency {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('idempotency', options, OPTIONS)
  const id = options.id ?? DEFAULT_ID
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
    throw new InvalidOptionError('id', id, 'a non-empty string of at most 64 characters')
  }
  const header = options.header ?? 'Idempotency-Key'
  if (typeof header !== 'string' || !HEADER_NAME.test(header)) {
    throw new InvalidOptionError('header', header, 'an HTTP header name')
  }
  const headerKey = header.toLowerCase()
  const methodList = options.methods ?? DEFAULT_METHODS
  if (!Array.isArray(methodList) || methodList.length === 0 || methodList.some((m) => typeof m !== 'string')) {
    throw new InvalidOptionError('methods', methodList, 'a non-empty array of HTTP methods')
  }
  const methods = new Set(methodList.map((m) => m.toUpperCase()))
  const required = options.required ?? false
  if (typeof required !== 'boolean') throw new InvalidOptionError('required', required, 'a boolean')
  const scope = options.scope
  if (scope !== undefined && typeof scope !== 'function') {
    throw new InvalidOptionError('scope', scope, 'a function of the request returning a string')
  }
  const fingerprint = fingerprinter(options.fingerprint)
  const store = options.store ?? new MemoryIdempotencyStore()
  if (typeof store !== 'object' || store === null || typeof store.claim !== 'function') {
    throw new InvalidOptionError('store', store, 'an IdempotencyStore (claim, complete, release, get)')
  }
  const lockTtlMs = Math.ceil(duration('lockTtlMs', options.lockTtlMs ?? 30_000))
  const recordTtlMs = Math.ceil(duration('recordTtlMs', options.recordTtlMs ?? 86_400_000))
  const waitMs = options.waitMs === undefined || options.waitMs === 0 ? 0 : duration('waitMs', options.waitMs)
  const maxBodyBytes = positiveInteger('maxBodyBytes', options.maxBodyBytes ?? 1024 * 1024)
  const replayHeaders = resolveReplayHeaders(options.replayHeaders)
  const replayedHeader = options.replayedHeader ?? 'Idempotent-Replayed'
  if (replayedHeader !== false && (typeof replayedHeader !== 'string' || !HEADER_NAME.test(replayedHeader))) {
    throw new InvalidOptionError('replayedHeader', replayedHeader, 'an HTTP header name or false')
  }
  const storeStatus = options.storeStatus ?? defaultStoreStatus
  if (typeof storeStatus !== 'function') throw new InvalidOptionError('storeStatus', storeStatus, 'a function')
  const storeTimeoutMs = nonNegativeNumber('storeTimeoutMs', options.storeTimeoutMs ?? 250)
  const failClosed =
    oneOf('onStoreError', options.onStoreError ?? 'fail-closed', ['fail-closed', 'fail-open']) === 'fail-closed'
  const logger = options.logger
  const guard = store.local === true ? undefined : new StoreGuard(storeTimeoutMs)
  if (scope === undefined) {
    warnOnce(
      'BW_IDEMPOTENCY_NO_SCOPE',
      'An idempotency policy has no `scope`: every caller shares one key space, so one client could receive another’s stored response by reusing its key. Pass `scope: (request) => <user or tenant id>`.',
      logger,
    )
  }
  const prefix = `${id}:`
  const local = store.local === true
  /**
   * The record key: scope, method, route and key, scope and route length-prefixed so no two splits of the same
   * characters collide. Remote stores get a digest of it (bounded, and the raw key never leaves the process);
   * in-process stores the composite itself, saving a hash per replay — there a digest is made only for events.
   */
  const recordKeyOf = (scope: string, method: string, path: string, key: string): string => {
    const composite = `${scope.length}:${scope}${method} ${path.length}:${path}${key}`
    return prefix + (local ? composite : digest(composite))
  }
  const keyHashOf = (recordKey: string): string =>
    local ? digest(recordKey).slice(0, 16) : recordKey.slice(prefix.length, prefix.length + 16)
  /** One replay decision per stored response object: a memory store hands back the same object every time. */
  const replays = new WeakMap<StoredResponse, ReplayDecision>()

  const call = <T>(operation: string, run: () => MaybePromise<T>, mustTry = false): MaybePromise<T> =>
    guard === undefined ? run() : guard.run(operation, run, mustTry)

  const storeFailed = (error: unknown, operation: string, started: number, action: StoreErrorEvent['action']) => {
    if (channels.storeError.hasSubscribers) {
      publishStoreError(id, operation, error, action, (monotonicNow() - started) / 1000)
    }
  }

  const decided = (
    request: RequestView | undefined,
    outcome: IdempotencyDecisionEvent['outcome'],
    recordKey: string,
    started: number,
  ): void => {
    if (!channels.idempotencyDecision.hasSubscribers) return
    publish(channels.idempotencyDecision, {
      policy: id,
      outcome,
      keyHash: keyHashOf(recordKey),
      durationSeconds: started === 0 ? 0 : (monotonicNow() - started) / 1000,
      request,
    } satisfies IdempotencyDecisionEvent)
  }

  const settled = (
    request: RequestView | undefined,
    outcome: IdempotencySettledEvent['outcome'],
    reason: IdempotencySettledEvent['reason'],
    status: number,
    recordKey: string,
    started: number,
  ): void => {
    if (!channels.idempotencySettled.hasSubscribers) return
    publish(channels.idempotencySettled, {
      policy: id,
      outcome,
      reason,
      status,
      keyHash: keyHashOf(recordKey),
      durationSeconds: (monotonicNow() - started) / 1000,
      request,
    } satisfies IdempotencySettledEvent)
  }

  const replayOf = (response: StoredResponse): ReplayDecision => {
    let decision = replays.get(response)
    if (decision === undefined) {
      const headers: HeaderList =
        replayedHeader === false ? response.headers : [...response.headers, [replayedHeader, 'true']]
      // Valid UTF-8 goes out as a string: Node then writes it with the headers in one write instead of a writev
      // of two chunks, the single largest cost of a replay. Other bytes stay a Buffer, byte for byte.
      const body = isUtf8(response.body) ? response.body.toString('utf8') : response.body
      decision = { action: 'replay', status: response.status, headers, body }
      replays.set(response, decision)
    }
    return decision
  }

  /**
   * One attempt to write a pending result. Always tried, even while the guard skips a failing store. Refused
   * after an earlier attempt timed out: that attempt may have landed late, so the record says which.
   */
  const completeOnce = async (entry: PendingCompletion): Promise<'stored' | 'lost'> => {
    entry.attempts++
    let stored: boolean
    try {
      stored = await call('complete', () => store.complete(entry.key, entry.token, entry.response, recordTtlMs), true)
    } catch (error) {
      storeFailed(error, 'complete', entry.started, 'fail-open')
      entry.request = undefined // waiting in the background now: hold on to nothing of the request
      await extendLock(entry)
      throw error
    }
    if (stored || entry.attempts === 1) return stored ? 'stored' : 'lost'
    const record = await call('get', () => store.get(entry.key), true)
    return record?.state === 'completed' && record.fingerprint === entry.fingerprint ? 'stored' : 'lost'
  }

  /** Keep a pending result's lock from lapsing, where the store can (a store that answers but fails writes). */
  const extendLock = async (entry: PendingCompletion): Promise<void> => {
    if (store.extend === undefined || monotonicNow() - entry.lockedAt < lockTtlMs / 3) return
    try {
      const extended = await call('extend', () => store.extend!(entry.key, entry.token, lockTtlMs), true)
      if (extended) entry.lockedAt = monotonicNow()
    } catch {
      // The store is away: the complete attempt already reported it, and the lapse renewal covers the lock.
    }
  }

  const completionDone = (entry: PendingCompletion, outcome: CompletionOutcome): void => {
    settled(entry.request, outcome, undefined, entry.status, entry.key, entry.started)
  }

  /**
   * Results executed here whose records a remote store has not taken yet. Retried at least four times per lock
   * period, so a lock renewed after a lapse (see IdempotencyStore) is written before anyone may take it over.
   */
  const completions =
    guard === undefined
      ? undefined
      : new PendingCompletions(completeOnce, completionDone, Math.min(1000, lockTtlMs / 4))

  /** A pending result as the completed record it is about to become. */
  const completedFrom = (entry: PendingCompletion): IdempotencyRecord => ({
    state: 'completed',
    fingerprint: entry.fingerprint,
    response: entry.response,
  })

  /** Turn a claim (or a later look-up) into a decision; an in-flight duplicate may wait for the first. */
  const resolve = (
    request: RequestView,
    recordKey: string,
    print: string,
    token: string,
    result: ClaimResult,
    started: number,
    waitUntil: number,
  ): MaybePromise<IdempotencyDecision> => {
    if (result.state === 'claimed') {
      decided(request, 'executed', recordKey, started)
      return { action: 'execute', ticket: new Ticket(request, recordKey, token, print) }
    }
    if (result.fingerprint !== print) {
      decided(request, 'mismatch', recordKey, started)
      return MISMATCH
    }
    if (result.state === 'completed') {
      decided(request, 'replayed', recordKey, started)
      return replayOf(result.response)
    }
    if (waitMs > 0) {
      const deadline = waitUntil === 0 ? monotonicNow() + waitMs : waitUntil
      if (monotonicNow() < deadline && !request.signal.aborted) {
        return waitForFirst(request, recordKey, print, token, started, deadline)
      }
    }
    decided(request, 'conflict', recordKey, started)
    return CONFLICT
  }

  /** Poll the record until the first execution stores (replay), releases (claim again) or the wait ends (409). */
  const waitForFirst = async (
    request: RequestView,
    recordKey: string,
    print: string,
    token: string,
    started: number,
    deadline: number,
  ): Promise<IdempotencyDecision> => {
    try {
      await sleep(Math.max(1, Math.min(POLL_MS, deadline - monotonicNow())), undefined, {
        signal: request.signal,
        ref: false,
      })
      const pending = completions?.get(recordKey)
      if (pending !== undefined) return resolve(request, recordKey, print, token, completedFrom(pending), started, 0)
      let record: ClaimResult | undefined = await call('get', () => store.get(recordKey))
      // Released or expired meanwhile: this request may take the key itself.
      if (record === undefined) {
        record = await call('claim', () => store.claim(recordKey, print, token, lockTtlMs, recordTtlMs))
      }
      return await resolve(request, recordKey, print, token, record, started, deadline)
    } catch (error) {
      if (request.signal.aborted) {
        decided(request, 'conflict', recordKey, started)
        return CONFLICT
      }
      return failure(request, recordKey, error, 'get', started)
    }
  }

  const failure = (
    request: RequestView,
    recordKey: string,
    error: unknown,
    operation: string,
    started: number,
  ): IdempotencyDecision => {
    storeFailed(error, operation, started, failClosed ? 'fail-closed' : 'fail-open')
    decided(request, 'store_error', recordKey, started)
    return failClosed ? STORE_UNAVAILABLE : CONTINUE
  }

  const claim = (
    request: RequestView,
    body: unknown,
    rawBody: string | Uint8Array | undefined,
    key: string,
    scopeValue: unknown,
  ): MaybePromise<IdempotencyDecision> => {
    if (scopeValue !== undefined && typeof scopeValue !== 'string') {
      throw new InvalidOptionError('scope()', scopeValue, 'a string or undefined')
    }
    const recordKey = recordKeyOf(scopeValue ?? '', request.method, request.path, key)
    const print = fingerprint(request, body, rawBody)
    if (print === OVER_LIMIT) {
      decided(request, 'payload_too_complex', recordKey, 0)
      return TOO_COMPLEX
    }
    const started = guard === undefined ? 0 : monotonicNow()
    // This process executed the key and its record is still being written: answer from here, whatever the
    // store says meanwhile (it may be down, or may not have the record yet).
    const pending = completions?.size === 0 ? undefined : completions?.get(recordKey)
    if (pending !== undefined) return resolve(request, recordKey, print, '', completedFrom(pending), started, 0)
    const token = ownerToken()
    let result: MaybePromise<ClaimResult>
    try {
      result = call('claim', () => store.claim(recordKey, print, token, lockTtlMs, recordTtlMs))
    } catch (error) {
      return failure(request, recordKey, error, 'claim', started) // only in-process stores throw synchronously
    }
    if (!isPromiseLike(result)) return resolve(request, recordKey, print, token, result, started, 0)
    return result.then(
      (claimed) => resolve(request, recordKey, print, token, claimed, started, 0),
      (error: unknown) => failure(request, recordKey, error, 'claim', started),
    )
  }

  const keyOf = (request: RequestView): string | undefined | typeof MALFORMED => {
    const raw = request.header(headerKey)
    if (raw === undefined) return undefined
    return parseIdempotencyKey(raw) ?? MALFORMED
  }

  /** The response of one claimed execution; see {@link IdempotencyTicket}. */
  class Ticket implements IdempotencyTicket {
    readonly maxBodyBytes = maxBodyBytes
    settled = false
    readonly #request: RequestView
    readonly #key: string
    readonly #token: string
    readonly #fingerprint: string
    readonly #started = monotonicNow()
    #chunks: Buffer[] = []
    #size = 0

    constructor(request: RequestView, key: string, token: string, fingerprint: string) {
      this.#request = request
      this.#key = key
      this.#token = token
      this.#fingerprint = fingerprint
    }

    write(chunk: unknown, encoding?: BufferEncoding): boolean {
      if (this.settled) return false
      const buffer = toBuffer(chunk, encoding)
      if (buffer === undefined) {
        this.abandon('streamed')
        return false
      }
      this.#size += buffer.length
      if (this.#size > maxBodyBytes) {
        this.abandon('too_large')
        return false
      }
      if (buffer.length > 0) this.#chunks.push(buffer)
      return true
    }

    finish(
      status: number,
      header: (name: string) => unknown,
      last?: unknown,
      encoding?: BufferEncoding,
    ): MaybePromise<void> {
      if (this.settled) return undefined
      if (last !== undefined && last !== null && !this.write(last, encoding)) return undefined
      if (!storeStatus(status)) {
        // Not stored: the key is freed in the background and the response goes out now. A response that is not
        // the handler's — a timeout's or a shutdown's 503, written while the handler still runs — is then never
        // held back behind the store, which the deadline must not wait on.
        this.#release('status', status)
        return undefined
      }
      this.settled = true
      const chunks = this.#chunks
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, this.#size)
      this.#chunks = []
      const headers: Array<[string, string]> = []
      for (const name of replayHeaders) {
        const value = header(name)
        if (value === undefined || value === null) continue
        headers.push([name, Array.isArray(value) ? value.join(', ') : String(value)])
      }
      const response: StoredResponse = { status, headers, body }
      if (completions !== undefined) {
        // A remote store: the record must be written even if the store is failing now (see PendingCompletions).
        return completions.write({
          key: this.#key,
          token: this.#token,
          fingerprint: this.#fingerprint,
          response,
          status,
          until: monotonicNow() + recordTtlMs,
          started: this.#started,
          request: this.#request,
          lockedAt: this.#started,
          attempts: 0,
          busy: false,
        })
      }
      const done = (stored: boolean): void => {
        settled(this.#request, stored ? 'stored' : 'lost', undefined, status, this.#key, this.#started)
      }
      const failed = (error: unknown): void => {
        storeFailed(error, 'complete', this.#started, 'fail-open')
        settled(this.#request, 'store_error', undefined, status, this.#key, this.#started)
      }
      let result: MaybePromise<boolean>
      try {
        result = call('complete', () => store.complete(this.#key, this.#token, response, recordTtlMs))
      } catch (error) {
        return failed(error)
      }
      if (!isPromiseLike(result)) return done(result)
      return result.then(done, failed)
    }

    abandon(reason: 'error' | 'streamed' | 'too_large' | 'aborted'): void {
      if (this.settled) return
      this.#release(reason, 0)
    }

    /** Free the key without waiting: nothing is held back for a response that is not stored. Never rejects. */
    #release(reason: NonNullable<IdempotencySettledEvent['reason']>, status: number): void {
      this.settled = true
      this.#chunks = []
      const done = (released: boolean): void => {
        settled(this.#request, released ? 'released' : 'lost', reason, status, this.#key, this.#started)
      }
      const failed = (error: unknown): void => {
        storeFailed(error, 'release', this.#started, 'fail-open')
        settled(this.#request, 'store_error', reason, status, this.#key, this.#started)
      }
      let result: MaybePromise<boolean>
      try {
        result = call('release', () => store.release(this.#key, this.#token))
      } catch (error) {
        failed(error)
        return
      }
      if (isPromiseLike(result)) result.then(done, failed)
      else done(result)
    }
  }

  return {
    id,
    covers: (method) => methods.has(method.toUpperCase()),
    check(request, body, rawBody) {
      if (!methods.has(request.method)) return CONTINUE
      const key = keyOf(request)
      if (key === undefined) {
        if (!required) return CONTINUE
        decided(request, 'missing_key', '', 0)
        return MISSING
      }
      if (key === MALFORMED) {
        decided(request, 'invalid_key', '', 0)
        return INVALID
      }
      if (scope === undefined) return claim(request, body, rawBody, key, undefined)
      const scopeValue = scope(request)
      if (isPromiseLike(scopeValue)) return scopeValue.then((s) => claim(request, body, rawBody, key, s))
      return claim(request, body, rawBody, key, scopeValue)
    },
    async lookup(request, key) {
      const scopeValue = scope === undefined ? undefined : await scope(request)
      const recordKey = recordKeyOf(scopeValue ?? '', request.method, request.path, key)
      const pending = completions?.get(recordKey)
      if (pending !== undefined) return completedFrom(pending)
      return (await call('get', () => store.get(recordKey))) ?? undefined
    },
  }
}

const MALFORMED = Symbol('malformed')

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

/** Unique across processes (random per process) and cheap per claim (a counter): tokens only need uniqueness. */
const TOKEN_PREFIX = randomBytes(12).toString('base64url')
let tokens = 0
function ownerToken(): string {
  return `${TOKEN_PREFIX}.${(++tokens).toString(36)}`
}

function toBuffer(chunk: unknown, encoding: BufferEncoding | undefined): Buffer | undefined {
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding ?? 'utf8')
  if (Buffer.isBuffer(chunk)) return chunk
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  return undefined
}

function resolveReplayHeaders(value: unknown): readonly string[] {
  if (value === undefined) return DEFAULT_REPLAY_HEADERS
  if (!Array.isArray(value)) throw new InvalidOptionError('replayHeaders', value, 'an array of header names')
  return value.map((name, i) => {
    if (typeof name !== 'string' || !HEADER_NAME.test(name)) {
      throw new InvalidOptionError(`replayHeaders[${i}]`, name, 'an HTTP header name')
    }
    if (FORBIDDEN_REPLAY_HEADERS.has(name.toLowerCase())) {
      throw new InvalidOptionError(`replayHeaders[${i}]`, name, 'a header other than Set-Cookie, Date or hop-by-hop')
    }
    return name
  })
}

function problem(status: number, title: string, code: string, detail: string, extra: HeaderList = []): RejectDecision {
  const body: ProblemDetails = { type: ABOUT_BLANK, title, status, detail, code }
  return Object.freeze({
    action: 'reject',
    status,
    headers: Object.freeze([...extra, ['Content-Type', PROBLEM_CONTENT_TYPE]]) as HeaderList,
    body: Object.freeze(body),
  })
}

const MISSING = problem(
  400,
  'Bad Request',
  ErrorCode.IdempotencyKeyMissing,
  'This request requires an Idempotency-Key header.',
)
const INVALID = problem(
  400,
  'Bad Request',
  ErrorCode.IdempotencyKeyInvalid,
  'The Idempotency-Key header must be one string or token of 1 to 255 characters.',
)
const CONFLICT = problem(
  409,
  'Conflict',
  ErrorCode.IdempotencyInProgress,
  'A request with this Idempotency-Key is still being processed; retry later.',
  [['Retry-After', '1']],
)
const MISMATCH = problem(
  422,
  'Unprocessable Content',
  ErrorCode.IdempotencyMismatch,
  'This Idempotency-Key was already used with a different request payload.',
)
const TOO_COMPLEX = problem(
  413,
  'Content Too Large',
  ErrorCode.IdempotencyPayloadTooComplex,
  'The request body is nested too deeply or too large to fingerprint for idempotency.',
)
const STORE_UNAVAILABLE = problem(
  503,
  'Service Unavailable',
  ErrorCode.StoreUnavailable,
  'Idempotency is temporarily unavailable; the request was not executed.',
  [['Retry-After', '1']],
)
