// The circuit breaker: a state machine (closed → open → half-open → closed) fed with call outcomes. Opens on
// consecutive failures, on a failure ratio or a slow-call ratio over a sliding window; lets exactly
// `halfOpenProbes` calls test a dependency after the open period; shares "open until" through a store.

import { runGuarded, type Stack } from '../dependency/guarded-call.js'
import { CircuitOpenError, InvalidOptionError } from '../errors.js'
import {
  type CircuitBreakerCallEvent,
  type CircuitBreakerStateEvent,
  type CircuitState,
  channels,
  publish,
  publishStoreError,
} from '../events.js'
import type { ExecuteOptions, Policy, Work } from '../execute/policy.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import {
  type Duration,
  duration,
  knownOptions,
  optionalFunction,
  policyName,
  positiveInteger,
} from '../internal/validate.js'
import { type BreakerStateStore, settleStoreCall } from './state-store.js'

/** Options of {@link createCircuitBreaker} (and the `breaker` of `dependency()`). */
export interface CircuitBreakerOptions {
  /** Names the breaker in events, errors and the shared store. Default `"circuit-breaker"`. */
  name?: string
  /** Open after this many failures in a row; `false` for never. Default `5`. */
  consecutiveFailures?: number | false
  /** Open when at least this share of the calls in the window failed, e.g. `0.5`. Default: off. */
  failureRatio?: number
  /** A call slower than this counts as slow, even when it succeeds (ms or `"2s"`). Needed by `slowCallRatio`. */
  slowCallMs?: Duration
  /** Open when at least this share of the calls in the window were slow, e.g. `0.8`. Default: off. */
  slowCallRatio?: number
  /** Length of the sliding window the ratios are computed over. Default `10_000` ms. */
  windowMs?: Duration
  /** Sub-buckets of the window: it slides by `windowMs / windowBuckets`. Default `10`. */
  windowBuckets?: number
  /** No ratio is computed below this many calls in the window. Default `20`. */
  minimumCalls?: number
  /** How long the breaker stays open before probing. Default `5_000` ms. */
  openMs?: Duration
  /**
   * Cap of the open period when it grows: each re-open (a failed probe) multiplies it by `openBackoffFactor`,
   * up to this. Default: `openMs` (no growth).
   */
  maxOpenMs?: Duration
  /** Growth factor of the open period on consecutive re-opens. Default `2`. */
  openBackoffFactor?: number
  /** Calls let through at a time when half-open; that many successes close the breaker. Default `1`. */
  halfOpenProbes?: number
  /**
   * Whether an error counts as a failure. Default: every error. A caller's own abort (client gone, request
   * deadline), a `DeadlineExceededError` and a `BulkheadFullError` are never counted, whatever this says; an
   * error it says is not a failure counts as a success (the dependency answered).
   */
  isFailure?: (error: unknown) => boolean
  /**
   * Whether a result counts as a failure. Default: a fetch `Response` with status ≥ 500 or 429. The call still
   * resolves with the result.
   */
  isFailureResult?: (result: unknown) => boolean
  /** Share the open state with other processes (see {@link BreakerStateStore}). Default: none. */
  store?: BreakerStateStore
  /** With a store: read the shared state at most once per this interval (and only when calls arrive). Default `1_000` ms. */
  shareIntervalMs?: Duration
  /** Start from a {@link CircuitBreaker.snapshot} (e.g. persisted before a restart). */
  initialState?: CircuitBreakerSnapshot
  /** Monotonic ms clock; inject one in tests. Default `performance.now`. */
  clock?: Clock
}

/** A breaker's state as plain data, to persist and hydrate from. */
export interface CircuitBreakerSnapshot {
  state: CircuitState
  /** Ms left in the open period (0 unless open). */
  openRemainingMs: number
  /** Consecutive re-opens so far (the open period's growth). */
  reopens: number
  /** Failures in a row so far (closed state). */
  consecutiveFailures: number
}

/** The outcome a guarded call reports to its breaker. */
export const SUCCESS = 0
export const FAILURE = 1
export const IGNORED = 2
export type CallOutcome = typeof SUCCESS | typeof FAILURE | typeof IGNORED

/** `acquire()` result when the call is rejected. */
export const REJECTED = -1

const CLOSED = 0
const OPEN = 1
const HALF_OPEN = 2
const ISOLATED = 3
const STATE_NAMES: readonly CircuitState[] = ['closed', 'open', 'half_open', 'isolated']
const KEYS = new Set([
  'name',
  'consecutiveFailures',
  'failureRatio',
  'slowCallMs',
  'slowCallRatio',
  'windowMs',
  'windowBuckets',
  'minimumCalls',
  'openMs',
  'maxOpenMs',
  'openBackoffFactor',
  'halfOpenProbes',
  'isFailure',
  'isFailureResult',
  'store',
  'shareIntervalMs',
  'initialState',
  'clock',
])

/** A fetch `Response` (or anything shaped like one) answered 5xx or 429. */
export function isFailedResponse(result: unknown): boolean {
  if (typeof Response === 'undefined' || !(result instanceof Response)) return false
  return result.status >= 500 || result.status === 429
}

const everyError = (): boolean => true

/**
 * A circuit breaker. Use it alone (`execute`), in {@link compose}, or through `dependency()`.
 *
 * @example
 * import { createCircuitBreaker, isCircuitOpenError } from '@breakwater/core'
 *
 * const breaker = createCircuitBreaker({ name: 'pricing', consecutiveFailures: 5, openMs: 1000 })
 * export async function price(sku: string): Promise<unknown> {
 *   try {
 *     const res = await breaker.execute(({ signal }) => fetch(`http://127.0.0.1:4000/price/${sku}`, { signal }))
 *     return await res.json()
 *   } catch (err) {
 *     if (isCircuitOpenError(err)) return { price: null, retryAfter: err.retryAfterSeconds }
 *     throw err
 *   }
 * }
 */
export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  return new CircuitBreaker(options)
}

/** A circuit breaker. Create one with {@link createCircuitBreaker}. */
export class CircuitBreaker implements Policy {
  readonly name: string
  /** @internal Its clock: the calls it guards are timed with it too. */
  readonly clock: Clock
  readonly #now: Clock
  readonly #consecutiveLimit: number
  readonly #failureRatio: number
  readonly #slowRatio: number
  /** Infinity when no slow-call trigger. */
  readonly slowCallMs: number
  readonly #minimumCalls: number
  readonly #bucketMs: number
  readonly #openMs: number
  readonly #maxOpenMs: number
  readonly #factor: number
  readonly #probes: number
  readonly #isFailure: (error: unknown) => boolean
  readonly #isFailureResult: (result: unknown) => boolean
  readonly #store: BreakerStateStore | undefined
  readonly #shareIntervalMs: number
  /** Whether a completed call's duration matters to this breaker (slow calls, or the sliding window). */
  readonly needsDuration: boolean
  readonly #windowed: boolean
  readonly #stack: Stack

  #state = CLOSED
  /** Bumped on every transition: outcomes of calls admitted under an earlier generation are not counted. */
  #generation = 0
  #openUntil = 0
  #reopens = 0
  #consecutive = 0
  #probesAdmitted = 0
  #probeSuccesses = 0
  #nextShareReadAt = 0
  // The sliding window: one bucket per `bucketMs`, reused when its epoch is stale.
  readonly #epochs: Float64Array
  readonly #calls: Uint32Array
  readonly #failures: Uint32Array
  readonly #slow: Uint32Array

  constructor(options: CircuitBreakerOptions) {
    knownOptions('circuitBreaker', options, KEYS)
    const name = policyName('name', options.name ?? 'circuit-breaker')
    this.name = name
    this.#now = options.clock ?? monotonicNow
    if (typeof this.#now !== 'function') throw new InvalidOptionError('clock', options.clock, 'a function')
    this.clock = this.#now
    const consecutive = options.consecutiveFailures ?? 5
    this.#consecutiveLimit =
      consecutive === false ? Number.POSITIVE_INFINITY : positiveInteger('consecutiveFailures', consecutive)
    this.#failureRatio = ratio('failureRatio', options.failureRatio)
    this.#slowRatio = ratio('slowCallRatio', options.slowCallRatio)
    if (options.slowCallMs !== undefined && options.slowCallRatio === undefined) {
      throw new InvalidOptionError('slowCallRatio', undefined, 'a ratio in (0, 1] when slowCallMs is given')
    }
    if (options.slowCallRatio !== undefined && options.slowCallMs === undefined) {
      throw new InvalidOptionError('slowCallMs', undefined, 'a duration when slowCallRatio is given')
    }
    this.slowCallMs =
      options.slowCallMs === undefined ? Number.POSITIVE_INFINITY : duration('slowCallMs', options.slowCallMs)
    const windowMs = duration('windowMs', options.windowMs ?? 10_000)
    const buckets = positiveInteger('windowBuckets', options.windowBuckets ?? 10)
    if (buckets > 1000) throw new InvalidOptionError('windowBuckets', buckets, 'at most 1000')
    this.#bucketMs = windowMs / buckets
    this.#minimumCalls = positiveInteger('minimumCalls', options.minimumCalls ?? 20)
    this.#openMs = duration('openMs', options.openMs ?? 5000)
    this.#maxOpenMs = duration('maxOpenMs', options.maxOpenMs ?? this.#openMs)
    if (this.#maxOpenMs < this.#openMs) {
      throw new InvalidOptionError('maxOpenMs', options.maxOpenMs, `at least openMs (${this.#openMs})`)
    }
    const factor = options.openBackoffFactor ?? 2
    if (typeof factor !== 'number' || !(factor >= 1 && factor <= 100)) {
      throw new InvalidOptionError('openBackoffFactor', factor, 'a number in [1, 100]')
    }
    this.#factor = factor
    this.#probes = positiveInteger('halfOpenProbes', options.halfOpenProbes ?? 1)
    this.#isFailure = optionalFunction('isFailure', options.isFailure) ?? everyError
    this.#isFailureResult = optionalFunction('isFailureResult', options.isFailureResult) ?? isFailedResponse
    const store = options.store
    if (
      store !== undefined &&
      (typeof store !== 'object' ||
        store === null ||
        typeof store.open !== 'function' ||
        typeof store.openRemainingMs !== 'function')
    ) {
      throw new InvalidOptionError('store', store, 'a BreakerStateStore (open, openRemainingMs)')
    }
    this.#store = store
    this.#shareIntervalMs = duration('shareIntervalMs', options.shareIntervalMs ?? 1000)
    this.#windowed = this.#failureRatio <= 1 || this.#slowRatio <= 1
    this.needsDuration = this.#windowed || this.slowCallMs !== Number.POSITIVE_INFINITY
    const size = this.#windowed ? buckets : 0
    this.#epochs = new Float64Array(size).fill(-1)
    this.#calls = new Uint32Array(size)
    this.#failures = new Uint32Array(size)
    this.#slow = new Uint32Array(size)
    this.#stack = {
      name,
      breaker: this,
      bulkhead: undefined,
      timeoutMs: Number.POSITIVE_INFINITY,
      dependency: false,
      calls: false,
      discard: undefined,
    }
    if (options.initialState !== undefined) this.hydrate(options.initialState)
  }

  /** The state now. An open breaker whose period has passed reads (and becomes) `half_open`. */
  get state(): CircuitState {
    if (this.#state === OPEN && this.#now() >= this.#openUntil) this.#transition(HALF_OPEN, 'open_elapsed')
    return STATE_NAMES[this.#state] as CircuitState
  }

  /** Run `work` unless the circuit is open; its outcome is counted. */
  execute<T>(work: Work<T>, options?: ExecuteOptions): Promise<T> {
    return runGuarded(this.#stack, work, options)
  }

  /** Open by hand until {@link reset}: every call is rejected with `CircuitOpenError` (state `isolated`). */
  isolate(): void {
    this.#transition(ISOLATED, 'isolate')
  }

  /** Close by hand and forget every count (also ends an isolation). */
  reset(): void {
    this.#reopens = 0
    this.#transition(CLOSED, 'reset')
  }

  /** The state as plain, JSON-safe data. */
  snapshot(): CircuitBreakerSnapshot {
    const state = this.state
    return {
      state,
      openRemainingMs: state === 'open' ? Math.max(0, this.#openUntil - this.#now()) : 0,
      reopens: this.#reopens,
      consecutiveFailures: this.#consecutive,
    }
  }

  /** Take over a {@link snapshot}. A half-open snapshot resumes as open with no time left (probes start anew). */
  hydrate(snapshot: CircuitBreakerSnapshot): void {
    if (typeof snapshot !== 'object' || snapshot === null || !STATE_NAMES.includes(snapshot.state)) {
      throw new InvalidOptionError('initialState', snapshot, 'a snapshot from CircuitBreaker.snapshot()')
    }
    const remaining = Number(snapshot.openRemainingMs)
    const reopens = Number(snapshot.reopens)
    const consecutive = Number(snapshot.consecutiveFailures)
    if (!(remaining >= 0) || !Number.isSafeInteger(reopens) || reopens < 0 || !Number.isSafeInteger(consecutive)) {
      throw new InvalidOptionError('initialState', snapshot, 'a snapshot from CircuitBreaker.snapshot()')
    }
    this.#clearCounts()
    this.#reopens = reopens
    this.#generation++
    if (snapshot.state === 'closed') {
      this.#state = CLOSED
      this.#consecutive = Math.max(0, consecutive)
    } else if (snapshot.state === 'isolated') this.#state = ISOLATED
    else {
      this.#state = OPEN
      this.#openUntil = this.#now() + (snapshot.state === 'open' ? Math.min(remaining, this.#maxOpenMs) : 0)
    }
  }

  /** Whole seconds (≥ 1) until the next probe may run. */
  retryAfterSeconds(): number {
    if (this.#state === OPEN) return Math.max(1, Math.ceil((this.#openUntil - this.#now()) / 1000))
    if (this.#state === ISOLATED) return Math.max(1, Math.ceil(this.#openMs / 1000))
    return 1
  }

  /**
   * @internal Ask to run one call: a token to hand back to {@link record}, or {@link REJECTED}. Closed costs no
   * clock read; half-open hands out exactly `halfOpenProbes` tokens at a time.
   */
  acquire(): number {
    let state = this.#state
    if (state === CLOSED) {
      if (this.#store !== undefined) this.#readShared()
      return this.#generation * 2
    }
    if (state === OPEN) {
      if (this.#now() < this.#openUntil) return REJECTED
      this.#transition(HALF_OPEN, 'open_elapsed')
      state = HALF_OPEN
    }
    if (state === HALF_OPEN && this.#probesAdmitted < this.#probes) {
      this.#probesAdmitted++
      return this.#generation * 2 + 1
    }
    return REJECTED
  }

  /** @internal The rejection for a call {@link acquire} refused (and its event). */
  rejection(): CircuitOpenError {
    const state = this.#state === ISOLATED ? 'isolated' : this.#state === HALF_OPEN ? 'half_open' : 'open'
    if (channels.circuitBreakerCall.hasSubscribers) this.#publishCall('rejected', false, 0)
    return new CircuitOpenError(this.name, state, this.retryAfterSeconds())
  }

  /** @internal How a completed error counts: caller aborts and full bulkheads never do. */
  classifyError(error: unknown): CallOutcome {
    return this.#isFailure(error) ? FAILURE : SUCCESS
  }

  /** @internal How a completed result counts. */
  classifyResult(result: unknown): CallOutcome {
    return this.#isFailureResult(result) ? FAILURE : SUCCESS
  }

  /** @internal Closed now (not open, half-open or isolated): hedges are sent only then. */
  get closed(): boolean {
    return this.#state === CLOSED
  }

  /** @internal True when {@link acquire} would admit a call now (no state change). */
  admits(): boolean {
    const state = this.#state
    if (state === CLOSED) return true
    if (state === OPEN) return this.#now() >= this.#openUntil && this.#probes > 0
    return state === HALF_OPEN && this.#probesAdmitted < this.#probes
  }

  /**
   * @internal An outcome that speaks for the dependency's health now, whenever its call was admitted — the store
   * guard's rule: any answer means the store answers (close), any failure means it is down (open afresh).
   */
  observe(outcome: typeof SUCCESS | typeof FAILURE): void {
    const state = this.#state
    if (outcome === SUCCESS) {
      if (state === OPEN || state === HALF_OPEN) this.#transition(CLOSED, 'probe_succeeded')
      else if (state === CLOSED) this.#consecutive = 0
      return
    }
    if (state === CLOSED) {
      if (++this.#consecutive >= this.#consecutiveLimit) this.#open('consecutive_failures')
    } else if (state !== ISOLATED) this.#open('probe_failed')
  }

  /** @internal Count the outcome of a call admitted with `token`, which ran `durationMs`. */
  record(token: number, outcome: CallOutcome, durationMs: number): void {
    const slow = durationMs >= this.slowCallMs
    if (channels.circuitBreakerCall.hasSubscribers) {
      const stale = token - (token & 1) !== this.#generation * 2 || outcome === IGNORED
      this.#publishCall(stale ? 'ignored' : outcome === FAILURE ? 'failure' : 'success', slow, durationMs)
    }
    if (token - (token & 1) !== this.#generation * 2) return // admitted before the last transition: says nothing of now
    if ((token & 1) === 1) {
      // A probe of the current half-open period.
      if (outcome === IGNORED) this.#probesAdmitted--
      else if (outcome === FAILURE) {
        this.#reopens++
        this.#open('probe_failed')
      } else if (++this.#probeSuccesses >= this.#probes) {
        this.#reopens = 0
        this.#transition(CLOSED, 'probe_succeeded')
      }
      return
    }
    if (outcome === IGNORED) return
    const failed = outcome === FAILURE
    this.#consecutive = failed ? this.#consecutive + 1 : 0
    if (this.#windowed) this.#count(failed, slow)
    if (failed && this.#consecutive >= this.#consecutiveLimit) this.#open('consecutive_failures')
    else if (this.#windowed && (failed || slow)) this.#checkRatios()
  }

  #count(failed: boolean, slow: boolean): void {
    const epoch = Math.floor(this.#now() / this.#bucketMs)
    const index = epoch % this.#epochs.length
    if (this.#epochs[index] !== epoch) {
      this.#epochs[index] = epoch
      this.#calls[index] = 0
      this.#failures[index] = 0
      this.#slow[index] = 0
    }
    ;(this.#calls[index] as number)++
    if (failed) (this.#failures[index] as number)++
    if (slow) (this.#slow[index] as number)++
  }

  #checkRatios(): void {
    const newest = Math.floor(this.#now() / this.#bucketMs)
    const oldest = newest - this.#epochs.length
    let calls = 0
    let failures = 0
    let slow = 0
    for (let i = 0; i < this.#epochs.length; i++) {
      if ((this.#epochs[i] as number) <= oldest) continue
      calls += this.#calls[i] as number
      failures += this.#failures[i] as number
      slow += this.#slow[i] as number
    }
    if (calls < this.#minimumCalls) return
    if (failures >= this.#failureRatio * calls) this.#open('failure_ratio')
    else if (slow >= this.#slowRatio * calls) this.#open('slow_call_ratio')
  }

  #open(reason: CircuitBreakerStateEvent['reason']): void {
    const durationMs = Math.min(this.#maxOpenMs, this.#openMs * this.#factor ** this.#reopens)
    this.#openFor(durationMs, reason)
    const store = this.#store
    if (store !== undefined) {
      settleStoreCall(
        () => store.open(this.name, durationMs),
        () => {},
        (error) => publishStoreError(this.name, 'open', error, 'fail-open', 0),
      )
    }
  }

  #openFor(durationMs: number, reason: CircuitBreakerStateEvent['reason']): void {
    this.#openUntil = this.#now() + durationMs
    this.#transition(OPEN, reason)
  }

  /** With a store: learn whether another process opened this breaker; at most once per interval, never awaited. */
  #readShared(): void {
    const now = this.#now()
    if (now < this.#nextShareReadAt) return
    this.#nextShareReadAt = now + this.#shareIntervalMs
    const store = this.#store as BreakerStateStore
    const generation = this.#generation
    settleStoreCall(
      () => store.openRemainingMs(this.name),
      (remaining) => {
        // Only a breaker still closed since the read started takes the peers' word (its own transitions win).
        if (remaining > 0 && this.#state === CLOSED && this.#generation === generation) {
          this.#openFor(Math.min(remaining, this.#maxOpenMs), 'shared')
        }
      },
      (error) => publishStoreError(this.name, 'openRemainingMs', error, 'fail-open', 0),
    )
  }

  #transition(to: number, reason: CircuitBreakerStateEvent['reason']): void {
    const from = this.#state
    this.#state = to
    this.#generation++
    this.#probesAdmitted = 0
    this.#probeSuccesses = 0
    this.#clearCounts() // each period counts afresh
    if (channels.circuitBreakerState.hasSubscribers) {
      publish(channels.circuitBreakerState, {
        policy: this.name,
        from: STATE_NAMES[from] as CircuitState,
        to: STATE_NAMES[to] as CircuitState,
        reason,
      } satisfies CircuitBreakerStateEvent)
    }
  }

  #clearCounts(): void {
    this.#consecutive = 0
    this.#epochs.fill(-1)
  }

  #publishCall(outcome: CircuitBreakerCallEvent['outcome'], slow: boolean, durationMs: number): void {
    publish(channels.circuitBreakerCall, {
      policy: this.name,
      outcome,
      slow,
      durationSeconds: durationMs / 1000,
    } satisfies CircuitBreakerCallEvent)
  }
}

/** A ratio option in (0, 1]; `Infinity` (never reached) when not given. */
function ratio(option: string, value: unknown): number {
  if (value === undefined) return Number.POSITIVE_INFINITY
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) {
    throw new InvalidOptionError(option, value, 'a ratio in (0, 1]')
  }
  return value
}
