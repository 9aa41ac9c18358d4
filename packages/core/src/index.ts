// Public entry of @breakwater/core. Everything exported here is documented and stable; src/internal is not.

export {
  AttemptTimeout,
  type AttemptTimeoutOptions,
  createAttemptTimeout,
} from './attempt-timeout/attempt-timeout.js'
export { Bulkhead, type BulkheadOptions, createBulkhead } from './bulkhead/bulkhead.js'
export {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitBreakerSnapshot,
  createCircuitBreaker,
  isFailedResponse,
} from './circuit-breaker/circuit-breaker.js'
export { type BreakerStateStore, MemoryBreakerStateStore } from './circuit-breaker/state-store.js'
export {
  CONTINUE,
  type ContinueDecision,
  type Decision,
  isPromiseLike,
  type MaybePromise,
  type RejectDecision,
} from './decision.js'
export { type Dependency, type DependencyOptions, dependency } from './dependency/dependency.js'
export {
  type AbortKind,
  AttemptTimeoutError,
  BreakwaterError,
  BulkheadFullError,
  CircuitOpenError,
  DeadlineExceededError,
  ErrorCode,
  InvalidOptionError,
  isAttemptTimeoutError,
  isBreakwaterError,
  isBulkheadFullError,
  isCircuitOpenError,
  isDeadlineExceededError,
  isInvalidOptionError,
  isRequestAbortedError,
  isStoreError,
  MethodNotAllowedError,
  RequestAbortedError,
  StoreError,
} from './errors.js'
export {
  type BulkheadDecisionEvent,
  type BulkheadLimitEvent,
  type CircuitBreakerCallEvent,
  type CircuitBreakerStateEvent,
  type CircuitState,
  channels,
  type DependencyAttemptEvent,
  type DependencyCallEvent,
  type FallbackServedEvent,
  type HealthCheckEvent,
  type HealthProbeEvent,
  type HedgeLaunchedEvent,
  type HedgeSettledEvent,
  type RateLimitDecisionEvent,
  type RateLimitRefundEvent,
  type RetryBudgetExhaustedEvent,
  type RetryScheduledEvent,
  type ShutdownPhaseEvent,
  type StaleServedEvent,
  type StoreErrorEvent,
  type TimeoutDecisionEvent,
  type TimeoutLateWriteEvent,
  type WarningEvent,
} from './events.js'
export {
  type CallerContext,
  compose,
  type ExecuteContext,
  type ExecuteOptions,
  type Policy,
  type Work,
} from './execute/policy.js'
export type { Served } from './execute/served.js'
export { createFallback, Fallback, type FallbackOptions } from './fallback/fallback.js'
export type { FailureFilter, FallbackReason } from './fallback/reason.js'
export {
  type EventLoopDelayCheckOptions,
  eventLoopDelayCheck,
  type HeapCheckOptions,
  heapCheck,
} from './health/built-in-checks.js'
export { createHealth, HEALTH_CONTENT_TYPE, type Health } from './health/health.js'
export type {
  CheckOutcome,
  CheckReport,
  HealthBody,
  HealthCheck,
  HealthInfo,
  HealthOptions,
  HealthStatus,
  OverloadSource,
  ProbeAnswer,
  ProbeKind,
  ProbeRoute,
} from './health/types.js'
export { createHedge, Hedge, type HedgeOptions, type HedgePercentile } from './hedge/hedge.js'
export type { IdempotencyDecisionEvent, IdempotencySettledEvent } from './idempotency/events.js'
export { canonicalJson, type Fingerprinter, type FingerprintOptions } from './idempotency/fingerprint.js'
export {
  createIdempotency,
  defaultStoreStatus,
  type ExecuteDecision,
  type Idempotency,
  type IdempotencyDecision,
  type IdempotencyOptions,
  type IdempotencyTicket,
} from './idempotency/idempotency.js'
export { MAX_IDEMPOTENCY_KEY_LENGTH, parseIdempotencyKey } from './idempotency/key-header.js'
export {
  MemoryIdempotencyStore,
  type MemoryIdempotencyStoreOptions,
} from './idempotency/memory-idempotency-store.js'
export type {
  ClaimResult,
  CompletedRecord,
  IdempotencyRecord,
  IdempotencyStore,
  InProgressRecord,
  ReplayDecision,
  StoredResponse,
} from './idempotency/types.js'
export type { Clock } from './internal/clock.js'
export { prepareRejection, responseEnded } from './internal/response.js'
export { type Duration, knownOptions, optionKeys } from './internal/validate.js'
export type { WarningLogger } from './internal/warn.js'
export type {
  LoadSheddingDecisionEvent,
  LoadSheddingLimitEvent,
  LoadSheddingPressureEvent,
} from './load-shedding/events.js'
export type {
  AimdOptions,
  Gradient2Options,
  LimitOptions,
  LimitSample,
  StaticLimitOptions,
  VegasOptions,
} from './load-shedding/limits.js'
export {
  createLoadShedder,
  type ExcludeRule,
  type LoadShedder,
  type LoadSheddingOptions,
  type OverloadState,
  type Permit,
  type Priority,
  type QueueOptions,
} from './load-shedding/load-shedder.js'
export type { PressureOptions, PressureReadings, PressureSignal } from './load-shedding/pressure.js'
export { PROBLEM_CONTENT_TYPE, type ProblemDetails, ProblemType, problemFor } from './problem.js'
export { type Evaluation, evaluate } from './rate-limit/algorithms.js'
export { boundKey, hashKey, ipKey, MAX_KEY_LENGTH } from './rate-limit/client-key.js'
export { HEADER_FORMATS, type HeaderFormat } from './rate-limit/headers.js'
export { LeasingRateLimitStore, type LeasingRateLimitStoreOptions } from './rate-limit/leasing-rate-limit-store.js'
export {
  createRateLimiter,
  type PerRequest,
  type RateLimiter,
  type RateLimitOptions,
  type RateLimitRule,
  type StoreFailurePolicy,
} from './rate-limit/rate-limiter.js'
export type { Algorithm, RateLimitResult, RateLimitStore, ResolvedRule, RuleResult } from './rate-limit/types.js'
export type { HeaderList, RequestView } from './request-view.js'
export type { BackoffKind } from './retry/backoff.js'
export { RetryBudget, type RetryBudgetOptions } from './retry/budget.js'
export { discardResult, isRetryableOutcome, type Outcome, retryAfterMs } from './retry/classify.js'
export { createRetry, Retry, type RetryOptions } from './retry/retry.js'
export {
  createGracefulShutdown,
  type GracefulShutdown,
  type GracefulShutdownOptions,
  isDraining,
  type ServerCloser,
  type ShutdownHook,
  type ShutdownResult,
} from './shutdown/graceful-shutdown.js'
export { createStaleIfError, StaleIfError, type StaleIfErrorOptions } from './stale-if-error/stale-if-error.js'
export { MemoryRateLimitStore, type MemoryRateLimitStoreOptions } from './stores/memory-rate-limit-store.js'
export {
  MemoryResultStore,
  type MemoryResultStoreOptions,
  type ResultStore,
  type StoredResult,
} from './stores/result-store.js'
export { errorResponse } from './timeout/error-response.js'
export { guardLateWrites } from './timeout/late-writes.js'
export type { RequestLifecycle } from './timeout/lifecycle.js'
export {
  DEFAULT_DEADLINE_HEADER,
  type ExpiryHandler,
  existingRequestContext,
  handedOn,
  handlerSettled,
  handlerStarted,
  MAX_TIMEOUT_MS,
  RequestContext,
  type RequestContextOptions,
  reportLateWrite,
  requestContext,
} from './timeout/request-context.js'
export { isShuttingDown, onShutdown, triggerShutdown } from './timeout/shutdown.js'
export { createTimeout, type Timeout, type TimeoutOptions } from './timeout/timeout.js'
