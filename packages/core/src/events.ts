// Decisions and store failures published on node:diagnostics_channel. Payloads are built only when someone
// subscribes, so an unobserved service pays one boolean check per event.

import diagnostics from 'node:diagnostics_channel'
import { ErrorCode } from './errors.js'
import type { FallbackReason } from './fallback/reason.js'
import type { RequestView } from './request-view.js'

/** Channel names. Stable: subscribers (and `@breakwater/otel`) rely on them. */
export const channels = {
  /** One message per rate-limit decision: {@link RateLimitDecisionEvent}. */
  rateLimitDecision: diagnostics.channel('breakwater:rate-limit:decision'),
  /** What became of a charge given back after the response (skip*Requests): {@link RateLimitRefundEvent}. */
  rateLimitRefund: diagnostics.channel('breakwater:rate-limit:refund'),
  /** A store call failed or timed out: {@link StoreErrorEvent}. */
  storeError: diagnostics.channel('breakwater:store:error'),
  /** A one-time configuration warning: {@link WarningEvent}. */
  warning: diagnostics.channel('breakwater:warning'),
  /** One message per request under a timeout policy, when its outcome is known: {@link TimeoutDecisionEvent}. */
  timeoutDecision: diagnostics.channel('breakwater:timeout:decision'),
  /** A handler wrote after its request had been answered at the deadline (once per request): {@link TimeoutLateWriteEvent}. */
  timeoutLateWrite: diagnostics.channel('breakwater:timeout:late-write'),
  /** One message per health check run (cached answers publish nothing): {@link HealthCheckEvent}. */
  healthCheck: diagnostics.channel('breakwater:health:check'),
  /** One message per probe answered: {@link HealthProbeEvent}. */
  healthProbe: diagnostics.channel('breakwater:health:probe'),
  /** One message per graceful-shutdown phase: {@link ShutdownPhaseEvent}. */
  shutdownPhase: diagnostics.channel('breakwater:shutdown:phase'),
  /** One message per request with (or missing) an Idempotency-Key: {@link IdempotencyDecisionEvent}. */
  idempotencyDecision: diagnostics.channel('breakwater:idempotency:decision'),
  /** What became of a claimed key when its request ended (stored, released, …): {@link IdempotencySettledEvent}. */
  idempotencySettled: diagnostics.channel('breakwater:idempotency:settled'),
  /** One message per load-shedding decision (admitted, queued, shed, …): {@link LoadSheddingDecisionEvent}. */
  loadSheddingDecision: diagnostics.channel('breakwater:load-shedding:decision'),
  /** The adaptive concurrency limit changed: {@link LoadSheddingLimitEvent}. */
  loadSheddingLimit: diagnostics.channel('breakwater:load-shedding:limit'),
  /** The pressure signals crossed (or fell back under) a threshold: {@link LoadSheddingPressureEvent}. */
  loadSheddingPressure: diagnostics.channel('breakwater:load-shedding:pressure'),
  /** A circuit breaker changed state: {@link CircuitBreakerStateEvent}. */
  circuitBreakerState: diagnostics.channel('breakwater:circuit-breaker:state'),
  /** One message per call a circuit breaker saw (counted, ignored or rejected): {@link CircuitBreakerCallEvent}. */
  circuitBreakerCall: diagnostics.channel('breakwater:circuit-breaker:call'),
  /** One message per bulkhead admission, rejection or queued call that left: {@link BulkheadDecisionEvent}. */
  bulkheadDecision: diagnostics.channel('breakwater:bulkhead:decision'),
  /** A bulkhead's limit, at its first use and whenever the adaptive limit changes: {@link BulkheadLimitEvent}. */
  bulkheadLimit: diagnostics.channel('breakwater:bulkhead:limit'),
  /** One message per attempt of a dependency call: {@link DependencyAttemptEvent}. */
  dependencyAttempt: diagnostics.channel('breakwater:dependency:attempt'),
  /** One message per dependency call, when it settles: {@link DependencyCallEvent}. */
  dependencyCall: diagnostics.channel('breakwater:dependency:call'),
  /** A retry was scheduled (attempt, delay, reason): {@link RetryScheduledEvent}. */
  retryScheduled: diagnostics.channel('breakwater:retry:scheduled'),
  /** A retry or hedge was not sent because the retry budget was spent: {@link RetryBudgetExhaustedEvent}. */
  retryBudgetExhausted: diagnostics.channel('breakwater:retry:budget-exhausted'),
  /** A hedged attempt was started: {@link HedgeLaunchedEvent}. */
  hedgeLaunched: diagnostics.channel('breakwater:hedge:launched'),
  /** A call that launched hedges got its answer, from the first attempt or a hedge: {@link HedgeSettledEvent}. */
  hedgeSettled: diagnostics.channel('breakwater:hedge:settled'),
  /** A fallback value answered a failed call: {@link FallbackServedEvent}. */
  fallbackServed: diagnostics.channel('breakwater:fallback:served'),
  /** A stored earlier result answered a failed call: {@link StaleServedEvent}. */
  staleServed: diagnostics.channel('breakwater:stale:served'),
} as const

/** A circuit breaker's state. `isolated`: opened by hand with `isolate()`, until `reset()`. */
export type CircuitState = 'closed' | 'open' | 'half_open' | 'isolated'

/** Payload of `breakwater:circuit-breaker:state`. */
export interface CircuitBreakerStateEvent {
  /** The breaker's (dependency's) name. */
  policy: string
  from: CircuitState
  to: CircuitState
  /**
   * Why: a trigger (`consecutive_failures`, `failure_ratio`, `slow_call_ratio`), a probe's outcome
   * (`probe_failed`, `probe_succeeded`), the open period ending (`open_elapsed`), a manual `isolate`/`reset`, or
   * `shared`: another process opened the breaker (read from the shared store).
   */
  reason:
    | 'consecutive_failures'
    | 'failure_ratio'
    | 'slow_call_ratio'
    | 'probe_failed'
    | 'probe_succeeded'
    | 'open_elapsed'
    | 'isolate'
    | 'reset'
    | 'shared'
}

/** Payload of `breakwater:circuit-breaker:call`. */
export interface CircuitBreakerCallEvent {
  policy: string
  /**
   * `success`/`failure`: counted as such. `rejected`: not run, the circuit is open. `ignored`: run but not
   * counted (the caller aborted, a bulkhead was full, or the breaker changed state meanwhile).
   */
  outcome: 'success' | 'failure' | 'rejected' | 'ignored'
  /** Slower than the breaker's slow-call threshold (false when it has none). */
  slow: boolean
  /** Seconds the call ran (0 when rejected). */
  durationSeconds: number
}

/** Payload of `breakwater:bulkhead:decision`. */
export interface BulkheadDecisionEvent {
  policy: string
  /** `admitted` (at once or after queueing), `rejected` (see `reason`), `aborted` (the caller left the queue). */
  outcome: 'admitted' | 'rejected' | 'aborted'
  reason?: 'full' | 'queue_timeout'
  /** Seconds spent in the queue (0 when not queued). */
  queuedSeconds: number
}

/** Payload of `breakwater:bulkhead:limit`. */
export interface BulkheadLimitEvent {
  policy: string
  limit: number
  inFlight: number
  queued: number
}

/** Payload of `breakwater:dependency:attempt`. */
export interface DependencyAttemptEvent {
  /** The dependency's name. */
  policy: string
  /** 1 for the first attempt. */
  attempt: number
  /** Not the call's first attempt: a retry or a hedge. */
  retry: boolean
  outcome: 'success' | 'failure' | 'timed_out' | 'aborted' | 'circuit_open' | 'bulkhead_full'
  durationSeconds: number
}

/** Payload of `breakwater:dependency:call`. */
export interface DependencyCallEvent {
  policy: string
  outcome: 'success' | 'failure' | 'timed_out' | 'circuit_open' | 'bulkhead_full' | 'deadline_exceeded' | 'aborted'
  /** Attempts made (0 when the call was refused before any: no budget, open circuit, full bulkhead). */
  attempts: number
  durationSeconds: number
}

/** Payload of `breakwater:retry:scheduled`. */
export interface RetryScheduledEvent {
  /** The retry's (dependency's) name. */
  policy: string
  /** The attempt that will run after the delay (2 for the first retry). */
  attempt: number
  /** Ms until it runs (the backoff, or the dependency's `Retry-After`). */
  delayMs: number
  /**
   * What failed: `timed_out` (attempt timeout), `error` (a connection error, or a custom `retryOn`'s pick),
   * `status` (a 502/503/504, or a 429 with `Retry-After`; see `status`).
   */
  reason: 'timed_out' | 'error' | 'status'
  /** The status of the retried result (`reason: 'status'`). */
  status: number | undefined
  /** The delay is the dependency's `Retry-After`, not the backoff. */
  retryAfter: boolean
}

/** Payload of `breakwater:retry:budget-exhausted`: a retry or hedge that was not sent. */
export interface RetryBudgetExhaustedEvent {
  policy: string
  /** What was refused. */
  kind: 'retry' | 'hedge'
}

/** Payload of `breakwater:hedge:launched`. */
export interface HedgeLaunchedEvent {
  policy: string
  /** 1 for the first hedge. */
  hedge: number
  /** `delay`: the first attempt had not answered after the hedge delay; `failure`: it failed retryably. */
  trigger: 'delay' | 'failure'
}

/** Payload of `breakwater:hedge:settled`: one per call that launched at least one hedge. */
export interface HedgeSettledEvent {
  policy: string
  /** Which attempt's answer the caller got. */
  winner: 'primary' | 'hedge'
}

/** Payload of `breakwater:fallback:served`. */
export interface FallbackServedEvent {
  /** The fallback's (dependency's) name. */
  policy: string
  /** Why the call failed. */
  reason: FallbackReason
}

/** Payload of `breakwater:stale:served`. */
export interface StaleServedEvent {
  /** The stale-if-error policy's (dependency's) name. */
  policy: string
  /** Age of the served result in ms. */
  ageMs: number
  /** Why the call failed. */
  reason: FallbackReason
}

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
  /** Decided in dry run (`dryRun` / `enforcePercent`): the outcome is what the policy decided (e.g. `limited`),
   * and the request went through. */
  dryRun: boolean
  request: RequestView | undefined
}

/** Payload of `breakwater:rate-limit:refund`: one per charge given back (or lost) once the response was known. */
export interface RateLimitRefundEvent {
  /** The limiter's `id`. */
  policy: string
  /** `refunded`: the store gave the units back. `store_error`: the refund failed or timed out, so the request
   * stays counted (a lost refund errs on the side of counting). */
  outcome: 'refunded' | 'store_error'
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

/** Payload of `breakwater:health:check`. */
export interface HealthCheckEvent {
  /** The check's `component:measurement` key. */
  check: string
  outcome: 'pass' | 'warn' | 'fail' | 'timed_out'
  critical: boolean
  durationSeconds: number
  /** What the check threw (or the timeout error), if it failed. */
  error: unknown
}

/** Payload of `breakwater:health:probe`. */
export interface HealthProbeEvent {
  probe: 'live' | 'ready' | 'startup'
  outcome: 'pass' | 'warn' | 'fail'
  /** Whether the caller was authorized to see details. */
  detailed: boolean
  durationSeconds: number
  request: RequestView | undefined
}

/** Payload of `breakwater:shutdown:phase`. */
export interface ShutdownPhaseEvent {
  /**
   * `draining`: readiness fails, still serving. `closing`: stopped accepting, waiting for in-flight requests.
   * `timed_out`: the shutdown timeout hit and in-flight requests were aborted. `hook`: one hook finished (see
   * `hook`, `error`). `exit`: done, with `exitCode`.
   */
  phase: 'draining' | 'closing' | 'timed_out' | 'hook' | 'exit'
  /** What started the shutdown: the signal name, or the reason given to `trigger()`. */
  reason: string
  /** Seconds since the shutdown started. */
  elapsedSeconds: number
  /** The hook's name (`hook` phase). */
  hook?: string
  /** The hook's failure or timeout (`hook` phase). */
  error?: unknown
  /** `exit` phase: 0 when clean, 1 when the timeout hit or a hook failed. */
  exitCode?: number
}

/** Publish a store failure on `breakwater:store:error` (only when someone listens). */
export function publishStoreError(
  policy: string,
  operation: string,
  error: unknown,
  action: StoreErrorEvent['action'],
  durationSeconds: number,
): void {
  if (!channels.storeError.hasSubscribers) return
  publish(channels.storeError, {
    policy,
    operation,
    kind: (error as { code?: string } | null)?.code === ErrorCode.StoreTimeout ? 'timeout' : 'error',
    action,
    error,
    durationSeconds,
  } satisfies StoreErrorEvent)
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
