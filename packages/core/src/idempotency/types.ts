// The idempotency store contract and the decisions of the idempotency policy. A store is shaped by the policy:
// claim / complete / release / get, each one atomic step, with an owner token so a stale executor cannot win.

import type { MaybePromise } from '../decision.js'
import type { HeaderList } from '../request-view.js'

/** A response as stored for replay: status, the allow-listed headers, and the body bytes. */
export interface StoredResponse {
  readonly status: number
  readonly headers: HeaderList
  readonly body: Buffer
}

/** A key someone is executing right now. */
export interface InProgressRecord {
  readonly state: 'in_progress'
  /** Fingerprint of the request that claimed the key. */
  readonly fingerprint: string
  /** Milliseconds until the lock expires and the key can be claimed again. */
  readonly lockExpiresInMs: number
}

/** A key whose first execution finished and was stored. */
export interface CompletedRecord {
  readonly state: 'completed'
  /** Fingerprint of the request that executed. */
  readonly fingerprint: string
  readonly response: StoredResponse
}

/** What a store holds for one key. */
export type IdempotencyRecord = InProgressRecord | CompletedRecord

/** The answer of {@link IdempotencyStore.claim}: the key is now yours, or the record someone else holds. */
export type ClaimResult = { readonly state: 'claimed' } | IdempotencyRecord

/**
 * Where idempotency records live. Each method is one atomic step (one round trip for remote stores):
 * among any number of concurrent `claim`s of one key exactly one gets `claimed`.
 *
 * `key` is already namespaced and hashed by the policy. A claimed key is locked for `lockTtlMs`; a completed
 * record lives `recordTtlMs`. `complete`, `release` and `extend` act only while `token` owns the key, so an
 * executor whose key someone else took over can never overwrite the newer record.
 *
 * A lock that lapses is not taken over by the first claim that finds it lapsed: that claim renews it once more
 * for `lockTtlMs` (answering `in_progress`), and only a claim after that second period takes the key over. A
 * live owner whose store stalled past the lock (a paused Redis: its clock jumps on resume) thereby still gets a
 * whole lock period to write its result before anyone else may execute; a crashed owner's key is free again
 * after between one and two lock periods past the lapse. Until taken over, the owner's `complete` still works.
 */
export interface IdempotencyStore {
  /** True for in-process stores: calls never block on I/O, so they are not timed. */
  readonly local?: boolean
  /**
   * Lock `key` for `token` if it is free (or its lapsed lock was already renewed once); otherwise return the
   * record that holds it. `recordTtlMs`, when given, bounds how long an in-progress record may be kept at most.
   */
  claim(
    key: string,
    fingerprint: string,
    token: string,
    lockTtlMs: number,
    recordTtlMs?: number,
  ): MaybePromise<ClaimResult>
  /** Store the response of the execution `token` owns. False when `token` no longer owns the key. */
  complete(key: string, token: string, response: StoredResponse, recordTtlMs: number): MaybePromise<boolean>
  /**
   * Push the lock `token` owns `lockTtlMs` into the future (its result is not written yet). False when `token`
   * no longer owns an in-progress key. Optional: without it, a pending result relies on the lapse renewal above.
   */
  extend?(key: string, token: string, lockTtlMs: number): MaybePromise<boolean>
  /** Free the lock `token` holds, so a retry executes. False when `token` no longer holds it. */
  release(key: string, token: string): MaybePromise<boolean>
  /** The record of `key`, if any (in progress or completed). */
  get(key: string): MaybePromise<IdempotencyRecord | undefined>
  /** Release resources owned by the store (never the user's connections). */
  shutdown?(): MaybePromise<void>
}

/** Send a stored response again: its status, headers (with the replay marker) and body. */
export interface ReplayDecision {
  readonly action: 'replay'
  readonly status: number
  readonly headers: HeaderList
  /** The stored bytes: a string when they are valid UTF-8 (the same bytes once encoded), else a Buffer. */
  readonly body: string | Buffer
}
