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

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
  if (typeof value === 'function') return 'a function'
  if (value === null) return 'null'
  if (Array.isArray(value)) return `an array of length ${value.length}`
  if (typeof value === 'object') return 'an object'
  return String(value)
}
