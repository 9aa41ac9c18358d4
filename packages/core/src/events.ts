// Decisions and store failures published on node:diagnostics_channel. Payloads are built only when someone
// subscribes, so an unobserved service pays one boolean check per event.

import diagnostics from 'node:diagnostics_channel'
import type { RequestView } from './request-view.js'

/** Channel names. Stable: subscribers (and `@breakwater/otel`) rely on them. */
export const channels = {
  /** One message per rate-limit decision: {@link RateLimitDecisionEvent}. */
  rateLimitDecision: diagnostics.channel('breakwater:rate-limit:decision'),
  /** A store call failed or timed out: {@link StoreErrorEvent}. */
  storeError: diagnostics.channel('breakwater:store:error'),
  /** A one-time configuration warning: {@link WarningEvent}. */
  warning: diagnostics.channel('breakwater:warning'),
  /** One message per request under a timeout policy, when its outcome is known: {@link TimeoutDecisionEvent}. */
  timeoutDecision: diagnostics.channel('breakwater:timeout:decision'),
  /** A handler wrote after its request had been answered at the deadline (once per request): {@link TimeoutLateWriteEvent}. */
  timeoutLateWrite: diagnostics.channel('breakwater:timeout:late-write'),
} as const

/** Payload of `breakwater:rate-limit:decision`. */
export interface RateLimitDecisionEvent {
  /** The limiter's `name`. */
  policy: string
  outcome: 'allowed' | 'limited' | 'skipped' | 'store_error'
  /** Names of the rules that denied the request (empty when allowed). */
  violated: readonly string[]
  /** Short SHA-256 digest of the client key — never the raw key. */
  keyHash: string
  /** Seconds spent in the store call (0 for skipped requests). */
  durationSeconds: number
  request: RequestView | undefined
}

/** Payload of `breakwater:store:error`. */
export interface StoreErrorEvent {
  /** The policy using the store. */
  policy: string
  /** `consume`, `peek`, `reset`, … */
  operation: string
  /** `timeout` or `error`. */
  kind: 'timeout' | 'error'
  /** What the failure policy did: `fail-open`, `fail-closed` or `fallback`. */
  action: 'fail-open' | 'fail-closed' | 'fallback'
  error: unknown
  durationSeconds: number
}

/** Payload of `breakwater:warning`. */
export interface WarningEvent {
  code: string
  message: string
}

/** Payload of `breakwater:timeout:decision`. */
export interface TimeoutDecisionEvent {
  /** The timeout policy's `id`. */
  policy: string
  /**
   * `completed`: answered within the deadline. `timed_out`: the deadline hit first (503). `deadline_exceeded`:
   * the handler failed with a DeadlineExceededError (504). `client_gone`: the client closed the connection.
   * `shutdown`: cancelled by process shutdown.
   */
  outcome: 'completed' | 'timed_out' | 'deadline_exceeded' | 'client_gone' | 'shutdown'
  /** The budget the request was given, in seconds (the route's timeout, or less from a trusted deadline header). */
  timeoutSeconds: number
  /** Seconds from the start of the request to this outcome. */
  durationSeconds: number
  request: RequestView | undefined
}

/** Payload of `breakwater:timeout:late-write`. */
export interface TimeoutLateWriteEvent {
  /** The timeout policy's `id`. */
  policy: string
  outcome: 'late_write'
  /** The response method the handler called late: `write`, `end`, `setHeader`, `writeHead`, … */
  operation: string
  /** Seconds between the deadline and the late write. */
  lateSeconds: number
  request: RequestView | undefined
}

/** Publish without letting a throwing subscriber reach the request. */
export function publish(channel: diagnostics.Channel, message: unknown): void {
  try {
    channel.publish(message)
  } catch {
    // Node reports a throwing subscriber itself (as an uncaught exception on the next tick); this only guards
    // against publish() throwing into the request path.
  }
}
