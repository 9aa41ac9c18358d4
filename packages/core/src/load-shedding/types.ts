// The load shedder's public shape: what adapters, readiness probes and framework-free callers use.

import type { ServerResponse } from 'node:http'
import type { Decision, MaybePromise, RejectDecision } from '../decision.js'
import type { RequestView } from '../request-view.js'
import type { Priority } from './config.js'
import type { LimitAlgorithm } from './limits.js'
import type { PressureReadings } from './pressure.js'

/** What a readiness probe reads: cheap and synchronous. */
export interface OverloadState {
  overloaded: boolean
  /** `concurrency` (shedding at the limit recently), `queue` (a standing queue), or a pressure signal name. */
  reasons: string[]
  limit?: number
  inflight?: number
}

/** A held slot under the limit. Release it exactly once; later calls do nothing. */
export interface Permit {
  /**
   * Give the slot back and tell the limiter how it went: `success` (default) feeds the latency, `dropped` (a
   * timeout or an overloaded dependency) tells it to back off, `ignored` (the client left, an unrelated error)
   * feeds nothing.
   */
  release(outcome?: 'success' | 'dropped' | 'ignored'): void
}

/** A load shedder usable with or without HTTP; adapters call {@link LoadShedder.admit} once per request. */
export interface LoadShedder {
  readonly id: string
  /** `static`, `gradient2`, `aimd` or `vegas`. */
  readonly algorithm: LimitAlgorithm['name']
  /** The current limit on requests in flight (whole requests). */
  readonly limit: number
  /** Requests holding a permit now. */
  readonly inflight: number
  /** Requests waiting in the queue now. */
  readonly queued: number
  /** The 503 answer (one of the `Retry-After` variants). */
  readonly rejection: RejectDecision
  /**
   * Decide for the request answered by `res`: `continue` (a permit is held and released when `res` closes,
   * whatever happened), a 503 rejection, or — when queued — a promise of either. Excluded requests continue
   * without a permit. A queued request whose client leaves is dropped from the queue; its promise resolves to
   * the rejection, and there is nobody to send it to. `request` may be left out while {@link wantsRequest} is
   * false. `holder` is the per-request object the permit is kept on (default `res`; see `requestContext`).
   * With `settledByHandler`, a permit granted at once does not listen to `res` yet: the adapter promises to call
   * {@link handedOn} when its middleware gets control back.
   */
  admit(
    res: ServerResponse,
    request: RequestView | undefined,
    priority?: Priority,
    holder?: object,
    settledByHandler?: boolean,
  ): MaybePromise<Decision>
  /**
   * For adapters that passed `settledByHandler` to {@link admit}: the rest of the request's handling has returned
   * (Express: `next()` came back). A permit whose response is already ended (`responseDone`, by default
   * `res.writableEnded`: a handler that answered synchronously) is released now, with the status as its outcome;
   * otherwise it is released when `res` closes, as without `settledByHandler`. Does nothing for a request with no
   * such permit, or whose permit already listens.
   *
   * @example
   * const decision = shedder.admit(res, undefined, undefined, res, true)
   * if (decision.action === 'continue') { next(); shedder.handedOn(res) }
   */
  handedOn(res: ServerResponse, holder?: object, responseDone?: boolean): void
  /**
   * Whether {@link admit} reads the request: an `exclude` or `priority` option, or a subscriber to the decision
   * events. When false, adapters skip building a request view.
   */
  readonly wantsRequest: boolean
  /** Framework-free: a permit, a rejection, or (queued) a promise of either. `signal` abandons a queued wait. */
  acquire(options?: {
    priority?: Priority
    request?: RequestView
    signal?: AbortSignal
  }): MaybePromise<Permit | RejectDecision>
  /** For readiness probes: overloaded now, and why. */
  overloadState(): OverloadState
  /** The last pressure readings (signals without thresholds are `undefined`). */
  readonly pressure: Readonly<PressureReadings>
  /** Re-read the pressure signals now (they are also read on their timer). */
  samplePressure(): void
  /** Stop the pressure timer. */
  close(): void
}
