// Payloads of the idempotency policy's diagnostics_channel events (channels in ../events.ts). The raw
// Idempotency-Key never appears: events carry a digest of the record key.

import type { RequestView } from '../request-view.js'

/** Payload of `breakwater:idempotency:decision`: one message per request that carries (or lacks) a key. */
export interface IdempotencyDecisionEvent {
  /** The policy's `id`. */
  policy: string
  /**
   * `executed`: the key was claimed and the handler runs. `replayed`: a stored response was sent again.
   * `conflict`: the key is in progress elsewhere (409). `mismatch`: same key, different payload (422).
   * `missing_key` / `invalid_key`: 400. `payload_too_complex`: the body is deeper or larger than the fingerprint's
   * bounds (413). `store_error`: the store failed (503, or passed through with `fail-open`).
   */
  outcome:
    | 'executed'
    | 'replayed'
    | 'conflict'
    | 'mismatch'
    | 'missing_key'
    | 'invalid_key'
    | 'payload_too_complex'
    | 'store_error'
  /** Short digest of the scoped record key — never the Idempotency-Key itself. Empty when there is no key. */
  keyHash: string
  /** Seconds spent deciding (store calls and any bounded wait). */
  durationSeconds: number
  request: RequestView | undefined
}

/** Payload of `breakwater:idempotency:settled`: what happened to a key once its execution ended. */
export interface IdempotencySettledEvent {
  policy: string
  /**
   * `stored`: the response was stored for replay. `released`: not stored, the key was freed for a retry.
   * `lost`: the lock had expired and another execution owns the key; nothing was written. `store_error`: the
   * store failed to store or release (the lock expires after `lockTtlMs`).
   */
  outcome: 'stored' | 'released' | 'lost' | 'store_error'
  /** Why a response was not stored: its status, a thrown error, a streamed or oversized body, the client gone. */
  reason: 'status' | 'error' | 'streamed' | 'too_large' | 'aborted' | undefined
  /** Status of the response (0 when none was sent). */
  status: number
  keyHash: string
  /** Seconds from the claim to this outcome. */
  durationSeconds: number
  request: RequestView | undefined
}
