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

/** Publish without letting a throwing subscriber reach the request. */
export function publish(channel: diagnostics.Channel, message: unknown): void {
  try {
    channel.publish(message)
  } catch {
    // Node reports a throwing subscriber itself (as an uncaught exception on the next tick); this only guards
    // against publish() throwing into the request path.
  }
}
