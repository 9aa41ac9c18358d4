// Public entry of @breakwater/core. Everything exported here is documented and stable; src/internal is not.

export {
  CONTINUE,
  type ContinueDecision,
  type Decision,
  isPromiseLike,
  type MaybePromise,
  type RejectDecision,
} from './decision.js'
export {
  type AbortKind,
  BreakwaterError,
  DeadlineExceededError,
  ErrorCode,
  InvalidOptionError,
  isBreakwaterError,
  isDeadlineExceededError,
  isInvalidOptionError,
  isRequestAbortedError,
  isStoreError,
  RequestAbortedError,
  StoreError,
} from './errors.js'
export {
  channels,
  type RateLimitDecisionEvent,
  type StoreErrorEvent,
  type TimeoutDecisionEvent,
  type TimeoutLateWriteEvent,
  type WarningEvent,
} from './events.js'
export type { Clock } from './internal/clock.js'
export type { Duration } from './internal/validate.js'
export type { WarningLogger } from './internal/warn.js'
export { PROBLEM_CONTENT_TYPE, type ProblemDetails, ProblemType } from './problem.js'
export { type Evaluation, evaluate } from './rate-limit/algorithms.js'
export { boundKey, hashKey, ipKey, MAX_KEY_LENGTH } from './rate-limit/client-key.js'
export { HEADER_FORMATS, type HeaderFormat } from './rate-limit/headers.js'
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
export { MemoryStore, type MemoryStoreOptions } from './stores/memory-store.js'
export { guardLateWrites } from './timeout/late-writes.js'
export {
  DEFAULT_DEADLINE_HEADER,
  type ExpiryHandler,
  existingRequestContext,
  MAX_TIMEOUT_MS,
  RequestContext,
  type RequestContextOptions,
  reportLateWrite,
  requestContext,
} from './timeout/request-context.js'
export { isShuttingDown, onShutdown, triggerShutdown } from './timeout/shutdown.js'
export { createTimeout, type Timeout, type TimeoutOptions } from './timeout/timeout.js'
