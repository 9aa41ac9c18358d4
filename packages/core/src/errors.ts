// Errors that reach users: each carries a stable `code` and is recognised by a brand, not by `instanceof`,
// because dual ESM/CJS installs can load two copies of this module.

const BRAND = Symbol.for('breakwater.error')

/** Stable error codes. They never change meaning once published. */
export const ErrorCode = {
  /** An option passed to a constructor or factory is invalid. */
  InvalidOption: 'BW_INVALID_OPTION',
  /** A request was rejected by a rate limit (HTTP 429). */
  RateLimited: 'BW_RATE_LIMITED',
  /** A store call failed or timed out and the failure policy is `fail-closed` (HTTP 503). */
  StoreUnavailable: 'BW_STORE_UNAVAILABLE',
  /** A store call did not answer within its timeout. */
  StoreTimeout: 'BW_STORE_TIMEOUT',
  /** A request reached its deadline before the handler answered (HTTP 503). */
  Timeout: 'BW_TIMEOUT',
  /** Too little of a request's budget was left for an upstream call, or that call outlived it (HTTP 504). */
  DeadlineExceeded: 'BW_DEADLINE_EXCEEDED',
  /** The client closed the connection before the response was complete. */
  ClientGone: 'BW_CLIENT_GONE',
  /** The process is shutting down and in-flight work was cancelled (HTTP 503). */
  Shutdown: 'BW_SHUTDOWN',
  /** A health check did not answer within its `timeoutMs` (the reason of the signal it was given). */
  HealthCheckTimeout: 'BW_HEALTH_CHECK_TIMEOUT',
  /** A graceful-shutdown hook did not finish within its timeout (the reason of the signal it was given). */
  ShutdownHookTimeout: 'BW_SHUTDOWN_HOOK_TIMEOUT',
  /** A covered request has no Idempotency-Key and the policy requires one (HTTP 400). */
  IdempotencyKeyMissing: 'BW_IDEMPOTENCY_KEY_MISSING',
  /** The Idempotency-Key header is malformed, too long or repeated (HTTP 400). */
  IdempotencyKeyInvalid: 'BW_IDEMPOTENCY_KEY_INVALID',
  /** A request with the same Idempotency-Key is still being processed (HTTP 409). */
  IdempotencyInProgress: 'BW_IDEMPOTENCY_IN_PROGRESS',
  /** The Idempotency-Key was already used with a different request payload (HTTP 422). */
  IdempotencyMismatch: 'BW_IDEMPOTENCY_MISMATCH',
  /** The body of an idempotent request is nested deeper or larger than its fingerprint allows (HTTP 413). */
  IdempotencyPayloadTooComplex: 'BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX',
  /** The service is overloaded and shed the request: concurrency limit, queue or pressure (HTTP 503). */
  Overloaded: 'BW_OVERLOADED',
  /**
   * The request could not be read as sent: malformed JSON, a bad Content-Length or encoding, an empty body
   * declared as JSON (HTTP 400, or the framework's other 4xx). From the body parser, answered by `errorHandler`.
   */
  BadRequest: 'BW_BAD_REQUEST',
  /** The request body is larger than the body parser's limit (HTTP 413). Answered by `errorHandler`. */
  PayloadTooLarge: 'BW_PAYLOAD_TOO_LARGE',
  /** The request body's Content-Type or Content-Encoding is not one the route parses (HTTP 415). */
  UnsupportedMediaType: 'BW_UNSUPPORTED_MEDIA_TYPE',
  /** The route exists but not for this method (HTTP 405, with `Allow`). */
  MethodNotAllowed: 'BW_METHOD_NOT_ALLOWED',
  /** A circuit breaker is open (or isolated) and rejected the call without running it (HTTP 503). */
  CircuitOpen: 'BW_CIRCUIT_OPEN',
  /** A bulkhead's calls in flight and its queue are full, or the call waited its whole queue timeout (HTTP 503). */
  BulkheadFull: 'BW_BULKHEAD_FULL',
  /** One attempt at a dependency outlived its attempt timeout and was cancelled (HTTP 504). */
  AttemptTimeout: 'BW_ATTEMPT_TIMEOUT',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * Base class of every error Breakwater raises. Use {@link isBreakwaterError} to recognise one.
 *
 * @example
 * try { createRateLimiter({ limit: -1, windowMs: 1000 }) }
 * catch (err) { if (isBreakwaterError(err)) console.log(err.code) } // 'BW_INVALID_OPTION'
 */
export class BreakwaterError extends Error {
  readonly code: ErrorCode
  /** HTTP status for errors that map to a response, else undefined. */
  readonly status: number | undefined
  /**
   * When a client may retry, in whole seconds (≥ 1): sent as `Retry-After` by the adapters' `errorHandler`
   * (through {@link problemFor}). Undefined when there is nothing useful to say.
   */
  readonly retryAfterSeconds: number | undefined
  readonly [BRAND] = true

  constructor(
    code: ErrorCode,
    message: string,
    options?: { status?: number; cause?: unknown; retryAfterSeconds?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'BreakwaterError'
    this.code = code
    this.status = options?.status
    const retryAfter = options?.retryAfterSeconds
    this.retryAfterSeconds = Number.isFinite(retryAfter) ? Math.max(1, Math.ceil(retryAfter as number)) : undefined
  }
}

/** True for any error raised by Breakwater, whichever copy of the package created it. */
export function isBreakwaterError(value: unknown): value is BreakwaterError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true
}

/** Raised at construction when an option is invalid; the message names the option and the value. */
export class InvalidOptionError extends BreakwaterError {
  readonly option: string
  constructor(option: string, value: unknown, expected: string) {
    super(ErrorCode.InvalidOption, `Invalid option "${option}": expected ${expected}, got ${describe(value)}`)
    this.name = 'InvalidOptionError'
    this.option = option
  }
}

/** True when `value` is an {@link InvalidOptionError}. */
export function isInvalidOptionError(value: unknown): value is InvalidOptionError {
  return isBreakwaterError(value) && value.code === ErrorCode.InvalidOption
}

/** A store call failed or did not answer in time. Published on `breakwater:store:error`. */
export class StoreError extends BreakwaterError {
  readonly operation: string
  constructor(code: ErrorCode, operation: string, message: string, cause?: unknown) {
    super(code, message, { status: 503, cause })
    this.name = 'StoreError'
    this.operation = operation
  }
}

/** True when `value` is a {@link StoreError} (timeout or failure). */
export function isStoreError(value: unknown): value is StoreError {
  return (
    isBreakwaterError(value) && (value.code === ErrorCode.StoreUnavailable || value.code === ErrorCode.StoreTimeout)
  )
}

/**
 * The route exists but does not serve this method. The adapters' `errorHandler` answers it 405 problem+json
 * (`BW_METHOD_NOT_ALLOWED`) with `Allow`; `headers` carries `Allow` too, as http-errors do, for other handlers.
 *
 * @example
 * app.all('/orders', (req, res, next) => next(new MethodNotAllowedError(['POST'])))
 */
export class MethodNotAllowedError extends BreakwaterError {
  /** The methods the route serves. */
  readonly allow: readonly string[]
  readonly headers: Readonly<Record<string, string>>
  constructor(allow: readonly string[]) {
    super(ErrorCode.MethodNotAllowed, `This route serves ${allow.join(', ')} only.`, { status: 405 })
    this.name = 'MethodNotAllowedError'
    this.allow = allow
    this.headers = { Allow: allow.join(', ') }
  }
}

/** Why a request's signal was aborted: its deadline, the client going away, or process shutdown. */
export type AbortKind = 'timeout' | 'client-gone' | 'shutdown'

const ABORT_CODES: Record<AbortKind, ErrorCode> = {
  timeout: ErrorCode.Timeout,
  'client-gone': ErrorCode.ClientGone,
  shutdown: ErrorCode.Shutdown,
}

/**
 * The `reason` of an aborted request signal. `kind` says why. Its `name` is `"TimeoutError"` for a deadline
 * and `"AbortError"` otherwise, as the platform's own `AbortSignal.timeout()` / `abort()` reasons, so code that
 * already tests `error.name` keeps working; prefer {@link isRequestAbortedError}.
 *
 * @example
 * try { await fetch(url, { signal: req.breakwater.signal }) }
 * catch (err) { if (isRequestAbortedError(err) && err.kind === 'client-gone') return }
 */
export class RequestAbortedError extends BreakwaterError {
  readonly kind: AbortKind
  constructor(kind: AbortKind, message: string) {
    super(ABORT_CODES[kind], message, { status: kind === 'client-gone' ? undefined : 503 })
    this.name = kind === 'timeout' ? 'TimeoutError' : 'AbortError'
    this.kind = kind
  }
}

/** True when `value` is a {@link RequestAbortedError} (deadline, client gone or shutdown). */
export function isRequestAbortedError(value: unknown): value is RequestAbortedError {
  if (!isBreakwaterError(value)) return false
  const code = value.code
  return code === ErrorCode.Timeout || code === ErrorCode.ClientGone || code === ErrorCode.Shutdown
}

/**
 * Raised when too little of a request's budget is left for an upstream call (`requireBudget`), and the reason of
 * a `timeoutSignal(ms)` that expired before the request's own deadline. A handler failing with it is answered
 * 504 by the timeout middleware. `statusCode` is set too, so frameworks' default error handlers also answer 504.
 * Its `name` is `"TimeoutError"` like `AbortSignal.timeout()`'s reason; prefer {@link isDeadlineExceededError}.
 *
 * @example
 * if (req.breakwater.remainingMs() < 50) throw new DeadlineExceededError('no budget left for the pricing call')
 */
export class DeadlineExceededError extends BreakwaterError {
  /** Milliseconds the caller asked for (0 when unknown). */
  readonly neededMs: number
  /** Milliseconds of the request's budget that were left. */
  readonly remainingMs: number
  readonly statusCode = 504
  constructor(message: string, neededMs = 0, remainingMs = 0) {
    super(ErrorCode.DeadlineExceeded, message, { status: 504 })
    this.name = 'TimeoutError'
    this.neededMs = neededMs
    this.remainingMs = remainingMs
  }
}

/** True when `value` is a {@link DeadlineExceededError}, whichever copy of the package created it. */
export function isDeadlineExceededError(value: unknown): value is DeadlineExceededError {
  return isBreakwaterError(value) && value.code === ErrorCode.DeadlineExceeded
}

/**
 * A circuit breaker rejected the call without running it: the dependency failed recently (state `open`), the
 * half-open probes are all taken (`half_open`), or the breaker was isolated by hand (`isolated`). Answered 503
 * with `Retry-After` = {@link retryAfterSeconds}, the whole seconds until the next probe may run (at least 1).
 *
 * @example
 * try { await inventory.execute(({ signal }) => fetch(url, { signal })) }
 * catch (err) { if (isCircuitOpenError(err)) return cachedInventory() ; throw err }
 */
export class CircuitOpenError extends BreakwaterError {
  /** The breaker's (dependency's) name. */
  readonly policy: string
  /** The state that rejected the call. */
  readonly state: 'open' | 'half_open' | 'isolated'
  declare readonly retryAfterSeconds: number
  constructor(policy: string, state: 'open' | 'half_open' | 'isolated', retryAfterSeconds: number) {
    super(ErrorCode.CircuitOpen, `The circuit of "${policy}" is ${state.replace('_', '-')}; the call was not made.`, {
      status: 503,
      retryAfterSeconds,
    })
    this.name = 'CircuitOpenError'
    this.policy = policy
    this.state = state
  }
}

/** True when `value` is a {@link CircuitOpenError}, whichever copy of the package created it. */
export function isCircuitOpenError(value: unknown): value is CircuitOpenError {
  return isBreakwaterError(value) && value.code === ErrorCode.CircuitOpen
}

/**
 * A bulkhead had no room: its calls in flight and its queue were full (`reason: 'full'`), or the call waited in
 * the queue for its whole wait timeout (`'queue_timeout'`). Answered 503 with `Retry-After`. Never counted as a
 * failure of the dependency by a circuit breaker: the dependency was not called.
 *
 * @example
 * try { await search.execute(({ signal }) => fetch(url, { signal })) }
 * catch (err) { if (isBulkheadFullError(err)) console.log(err.reason) ; throw err }
 */
export class BulkheadFullError extends BreakwaterError {
  /** The bulkhead's (dependency's) name. */
  readonly policy: string
  readonly reason: 'full' | 'queue_timeout'
  declare readonly retryAfterSeconds: number
  constructor(policy: string, reason: 'full' | 'queue_timeout', retryAfterSeconds: number) {
    super(
      ErrorCode.BulkheadFull,
      reason === 'full'
        ? `The bulkhead of "${policy}" is full; the call was not made.`
        : `The call to "${policy}" waited its whole queue timeout for a bulkhead slot; it was not made.`,
      { status: 503, retryAfterSeconds },
    )
    this.name = 'BulkheadFullError'
    this.policy = policy
    this.reason = reason
  }
}

/** True when `value` is a {@link BulkheadFullError}, whichever copy of the package created it. */
export function isBulkheadFullError(value: unknown): value is BulkheadFullError {
  return isBreakwaterError(value) && value.code === ErrorCode.BulkheadFull
}

/**
 * One attempt at a dependency did not settle within its attempt timeout: its signal was aborted with this error
 * as the reason and the call failed with it. Counted as a failure by a circuit breaker; answered 504. (When the
 * caller's own deadline is what ran out first, the error is a {@link DeadlineExceededError} instead.)
 *
 * @example
 * catch (err) { if (isAttemptTimeoutError(err)) console.log(`gave up after ${err.timeoutMs} ms`) }
 */
export class AttemptTimeoutError extends BreakwaterError {
  /** The dependency's name. */
  readonly policy: string
  /** The attempt timeout that ran out, in ms. */
  readonly timeoutMs: number
  readonly statusCode = 504
  constructor(policy: string, timeoutMs: number) {
    super(
      ErrorCode.AttemptTimeout,
      `The call to "${policy}" did not complete within its ${timeoutMs} ms attempt timeout.`,
      {
        status: 504,
      },
    )
    this.name = 'TimeoutError'
    this.policy = policy
    this.timeoutMs = timeoutMs
  }
}

/** True when `value` is an {@link AttemptTimeoutError}, whichever copy of the package created it. */
export function isAttemptTimeoutError(value: unknown): value is AttemptTimeoutError {
  return isBreakwaterError(value) && value.code === ErrorCode.AttemptTimeout
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
  if (typeof value === 'function') return 'a function'
  if (value === null) return 'null'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (typeof value === 'object') return 'an object'
  return String(value)
}
