// Payloads of the load shedder's diagnostics channels (`breakwater:load-shedding:*`), built only when subscribed.

import type { RequestView } from '../request-view.js'
import type { PressureReadings } from './pressure.js'

/** Payload of `breakwater:load-shedding:decision`. */
export interface LoadSheddingDecisionEvent {
  /** The shedder's `id`. */
  policy: string
  /**
   * `admitted`: holds a permit (after waiting `waitSeconds` if it was queued). `queued`: waits for a permit.
   * `shed`: answered 503 (see `reason`). `abandoned`: its client left while it waited. `skipped`: excluded.
   */
  outcome: 'admitted' | 'queued' | 'shed' | 'abandoned' | 'skipped'
  /**
   * Why it was shed: `limit` (no room, no queue), `queue-full`, `queue-timeout` (waited too long), `evicted`
   * (a higher-priority request took its place in the queue) or `pressure` (a process signal over threshold).
   */
  reason: 'limit' | 'queue-full' | 'queue-timeout' | 'evicted' | 'pressure' | undefined
  priority: 'critical' | 'normal' | 'sheddable'
  /** The concurrency limit at the time. */
  limit: number
  /** Requests in flight after this decision. */
  inflight: number
  /** Requests waiting after this decision. */
  queued: number
  /** Seconds spent in the queue (0 when it never waited). */
  waitSeconds: number
  /** Decided in dry run (`dryRun`): a `queued` or `shed` outcome was not enforced, and the request was admitted. */
  dryRun: boolean
  request: RequestView | undefined
}

/** Payload of `breakwater:load-shedding:limit`. */
export interface LoadSheddingLimitEvent {
  policy: string
  algorithm: 'static' | 'gradient2' | 'aimd' | 'vegas'
  previous: number
  limit: number
  /** Mean latency of the window that moved the limit, in seconds. */
  rttSeconds: number
  inflight: number
}

/** Payload of `breakwater:load-shedding:pressure`. */
export interface LoadSheddingPressureEvent {
  policy: string
  overloaded: boolean
  /** 0 (no signal over threshold) to 1 (shed every sheddable request); between them only with `ramp`. */
  level: number
  /** The signals over their threshold: `event-loop-delay`, `event-loop-utilization`, `heap-used`, `rss`. */
  reasons: string[]
  readings: PressureReadings
}
