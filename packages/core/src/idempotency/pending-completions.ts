// Results of executed requests that a remote store has not taken yet (it failed or stalled when they completed):
// held in memory, written in the background until the store takes them, and answered from here to duplicates
// that reach this process meanwhile. With the store's lapsed-lock renewal, a key then never executes twice while
// this process lives (README: "When the store fails at completion").

import { monotonicNow } from '../internal/clock.js'
import type { RequestView } from '../request-view.js'
import { type BackgroundWrites, holdingWrites, writesDone } from '../shutdown/background-writes.js'
import type { StoredResponse } from './types.js'

/** First retry delay; each failed round doubles it up to the cap given to {@link PendingCompletions}. */
const FIRST_RETRY_MS = 50
/** At most this many results wait at once; past it the oldest is given up (its key may execute again). */
const MAX_PENDING = 1000
/** At most this many body bytes wait at once, likewise. */
const MAX_PENDING_BYTES = 32 * 1024 * 1024

/** One executed request whose record is not written yet. */
export interface PendingCompletion {
  readonly key: string
  readonly token: string
  readonly fingerprint: string
  readonly response: StoredResponse
  readonly status: number
  /** Monotonic ms past which the record would have expired anyway: nothing is left to protect. */
  readonly until: number
  /** Monotonic ms of the claim, for the settled event. */
  readonly started: number
  /** The request, for events, until the first attempt failed (then nothing of it is held). */
  request: RequestView | undefined
  /** Monotonic ms at which the lock was last taken or extended. */
  lockedAt: number
  /** Attempts so far. */
  attempts: number
  /** An attempt is running (the first one, or a round's). */
  busy: boolean
}

/** What became of a pending result: written, refused (another execution owns the key), or given up. */
export type CompletionOutcome = 'stored' | 'lost' | 'store_error'

/**
 * Write one result: resolves `stored` or `lost` once the store answered, rejects while the store fails (the
 * result is then retried later).
 */
export type CompletionAttempt = (entry: PendingCompletion) => Promise<'stored' | 'lost'>

/**
 * The results of one policy still to be written. One `unref()`'d timer for all of them; each round tries them
 * in order and stops at the first failure (the store is still away), then waits twice as long, up to the cap.
 * While it holds any, graceful shutdown flushes them before exit (see {@link PendingCompletions.flush}).
 */
export class PendingCompletions implements BackgroundWrites {
  readonly #entries = new Map<string, PendingCompletion>()
  readonly #attempt: CompletionAttempt
  readonly #done: (entry: PendingCompletion, outcome: CompletionOutcome) => void
  readonly #maxDelayMs: number
  #bytes = 0
  #failures = 0
  #timer: ReturnType<typeof setTimeout> | undefined
  #running = false
  /** Shutdown is flushing: rounds follow each other at the first delay, not backing off. */
  #flushing = false
  /** Resolves the flush in progress once nothing is left. */
  #drained: (() => void) | undefined

  constructor(
    attempt: CompletionAttempt,
    done: (entry: PendingCompletion, outcome: CompletionOutcome) => void,
    maxDelayMs: number,
  ) {
    this.#attempt = attempt
    this.#done = done
    this.#maxDelayMs = Math.max(FIRST_RETRY_MS, maxDelayMs)
  }

  /** Results not yet written (the first attempt in flight included). */
  get size(): number {
    return this.#entries.size
  }

  /** The result waiting for `key`, if any. */
  get(key: string): PendingCompletion | undefined {
    return this.#entries.get(key)
  }

  /**
   * Write `entry` now; if the store fails, keep it and retry in the background. Resolves once the first attempt
   * settled (the response may go out), never rejects.
   */
  write(entry: PendingCompletion): Promise<void> {
    this.#add(entry)
    entry.busy = true
    return this.#attempt(entry).then(
      (outcome) => {
        entry.busy = false
        this.#finish(entry, outcome)
      },
      () => {
        entry.busy = false
        this.#schedule()
      },
    )
  }

  /**
   * Shutdown: try every held result now and keep retrying (each attempt still bounded by the store timeout)
   * until all are written or `signal` aborts; then give up the rest, reported `store_error` — their keys are no
   * longer protected once this process is gone. Resolves with how many were given up, at once on abort.
   */
  flush(signal: AbortSignal): Promise<number> {
    if (this.#entries.size === 0) return Promise.resolve(0)
    this.#flushing = true
    return new Promise<number>((resolve) => {
      const giveUp = (): void => {
        this.#drained = undefined
        this.#cancelTimer()
        let given = 0
        for (const entry of [...this.#entries.values()]) {
          this.#finish(entry, 'store_error')
          given++
        }
        resolve(given)
      }
      if (signal.aborted) return giveUp()
      signal.addEventListener('abort', giveUp, { once: true })
      this.#drained = () => {
        signal.removeEventListener('abort', giveUp)
        resolve(0)
      }
      // Now, not at the backoff's next turn (which may be a second away).
      this.#cancelTimer()
      if (!this.#running) void this.#round()
    })
  }

  #cancelTimer(): void {
    if (this.#timer === undefined) return
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #add(entry: PendingCompletion): void {
    const previous = this.#entries.get(entry.key)
    if (previous !== undefined) this.#finish(previous, 'lost')
    this.#entries.set(entry.key, entry)
    if (this.#entries.size === 1) holdingWrites(this)
    this.#bytes += entry.response.body.length
    // Bounded: the oldest idle result gives way (reported as a store error: its key is no longer protected).
    for (const oldest of this.#entries.values()) {
      if (this.#entries.size <= MAX_PENDING && this.#bytes <= MAX_PENDING_BYTES) break
      if (oldest !== entry && !oldest.busy) this.#finish(oldest, 'store_error')
    }
  }

  #finish(entry: PendingCompletion, outcome: CompletionOutcome): void {
    if (this.#entries.get(entry.key) !== entry) return
    this.#entries.delete(entry.key)
    this.#bytes -= entry.response.body.length
    this.#done(entry, outcome)
    if (this.#entries.size > 0) return
    writesDone(this)
    const drained = this.#drained
    this.#drained = undefined
    drained?.()
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#running || this.#entries.size === 0) return
    const delay = this.#flushing
      ? FIRST_RETRY_MS
      : Math.min(this.#maxDelayMs, FIRST_RETRY_MS * 2 ** Math.min(this.#failures, 16))
    const timer = setTimeout(() => {
      this.#timer = undefined
      void this.#round()
    }, delay)
    timer.unref()
    this.#timer = timer
  }

  async #round(): Promise<void> {
    this.#running = true
    let failed = false
    for (const entry of [...this.#entries.values()]) {
      if (entry.busy || this.#entries.get(entry.key) !== entry) continue
      if (monotonicNow() >= entry.until) {
        this.#finish(entry, 'store_error')
        continue
      }
      entry.busy = true
      try {
        const outcome = await this.#attempt(entry)
        entry.busy = false
        this.#finish(entry, outcome)
      } catch {
        entry.busy = false
        failed = true
        break // the store is still away: the others wait for the next round
      }
    }
    this.#failures = failed ? this.#failures + 1 : 0
    this.#running = false
    this.#schedule()
  }
}
