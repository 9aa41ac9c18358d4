// problem+json bodies (RFC 9457) for every rejection Breakwater produces: the one registry of problem types by
// error code, and the one path from an error to its problem response.

import { STATUS_CODES } from 'node:http'
import type { RejectDecision } from './decision.js'
import { ErrorCode, isBreakwaterError } from './errors.js'

/** The problem types registered by the IETF RateLimit draft (-09 and later). */
export const ProblemType = {
  QuotaExceeded: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  TemporaryReducedCapacity: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
} as const

/** A problem details object as sent in an `application/problem+json` body. */
export interface ProblemDetails {
  type: string
  title: string
  status: number
  detail?: string
  /** Breakwater's stable error code, e.g. `BW_RATE_LIMITED`. */
  code: string
  [extension: string]: unknown
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json'

/** `about:blank`: the problem means what its status code means (RFC 9457 §4.2.1). */
const ABOUT_BLANK = 'about:blank'

/** What every response carrying one error code says: its problem `type`, `title` and (default) `status`. */
export interface ProblemEntry {
  /** The problem type URI: an IANA-registered type, or `about:blank` when the status code says it all. */
  readonly type: string
  /** The `title`: the type's summary, or the status code's reason phrase (RFC 9110) for `about:blank`. */
  readonly title: string
  /** The HTTP status it is answered with; `undefined` for codes that never become a response. */
  readonly status: number | undefined
}

const blank = (status: number): ProblemEntry => ({ type: ABOUT_BLANK, title: reasonPhrase(status), status })
/** Codes that are never answered as an HTTP response (thrown at startup, or about a connection already gone). */
const unanswered = (title: string): ProblemEntry => ({ type: ABOUT_BLANK, title, status: undefined })

/**
 * The one registry of problem types: every {@link ErrorCode} with its problem `type`, `title` and `status`.
 * {@link problemFor} answers from it, and every policy's rejection carries the same three fields for its code, so
 * a client can branch on `type` or `code` alike whichever policy answered. `about:blank` wherever the status code
 * already says it all (RFC 9457 §4.2.1); the two IANA types of the RateLimit draft where they apply: a spent
 * quota (`quota-exceeded`) and capacity the server deliberately cut (`temporary-reduced-capacity`, load shedding).
 *
 * @example
 * import { ErrorCode, PROBLEMS } from '@breakwater/core'
 * PROBLEMS[ErrorCode.Overloaded].type // 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity'
 */
export const PROBLEMS: { readonly [Code in ErrorCode]: ProblemEntry } = Object.freeze({
  [ErrorCode.InvalidOption]: unanswered('Invalid Option'),
  [ErrorCode.RateLimited]: { type: ProblemType.QuotaExceeded, title: 'Too Many Requests', status: 429 },
  // A store outage means no more than 503: the store is down, the server did not choose to cut capacity.
  [ErrorCode.StoreUnavailable]: blank(503),
  [ErrorCode.StoreTimeout]: blank(503),
  // A deadline is exactly 503 (the request's own) or 504 (an upstream's): no quota was lowered.
  [ErrorCode.Timeout]: blank(503),
  [ErrorCode.DeadlineExceeded]: blank(504),
  [ErrorCode.ClientGone]: unanswered('Client Gone'),
  [ErrorCode.Shutdown]: blank(503),
  [ErrorCode.HealthCheckTimeout]: unanswered('Health Check Timeout'),
  [ErrorCode.ShutdownHookTimeout]: unanswered('Shutdown Hook Timeout'),
  [ErrorCode.IdempotencyKeyMissing]: blank(400),
  [ErrorCode.IdempotencyKeyInvalid]: blank(400),
  [ErrorCode.IdempotencyInProgress]: blank(409),
  [ErrorCode.IdempotencyMismatch]: blank(422),
  [ErrorCode.IdempotencyPayloadTooComplex]: blank(413),
  [ErrorCode.Overloaded]: { type: ProblemType.TemporaryReducedCapacity, title: 'Service Unavailable', status: 503 },
  [ErrorCode.BadRequest]: blank(400),
  [ErrorCode.PayloadTooLarge]: blank(413),
  [ErrorCode.UnsupportedMediaType]: blank(415),
  [ErrorCode.MethodNotAllowed]: blank(405),
  [ErrorCode.CircuitOpen]: blank(503),
  [ErrorCode.BulkheadFull]: blank(503),
  [ErrorCode.AttemptTimeout]: blank(504),
})

/** Causes followed to find a Breakwater error (Node wraps a signal's reason in an AbortError's `cause`). */
const MAX_CAUSE_DEPTH = 4
/** A framework's message for a malformed request is cut to this many characters (it can quote the body). */
const MAX_DETAIL = 200
/** Headers of a framework error carried to the response: only ones that describe the rejection. */
const CARRIED_HEADERS = ['Allow'] as const

/**
 * The problem+json response for an error, or `undefined` when the error is not one to answer this way (let the
 * framework's own error handling see it). The one path from error to response, used by each adapter's
 * `errorHandler`:
 * - a Breakwater error with a `status` (found on the error or up to four `cause`s deep): that status, its
 *   `code` with the `type` and `title` {@link PROBLEMS} gives it, its message as `detail`, and `Retry-After`
 *   from its `retryAfterSeconds`;
 * - a framework's client error — any error with a 4xx `status` / `statusCode`, as Express's body-parser
 *   (`entity.parse.failed`, `entity.too.large`), Fastify (`FST_ERR_CTP_*`) and Koa (`ctx.throw(400)`, body
 *   parsers) raise: that status with `BW_PAYLOAD_TOO_LARGE` (413), `BW_UNSUPPORTED_MEDIA_TYPE` (415),
 *   `BW_METHOD_NOT_ALLOWED` (405, with the error's `Allow`) or `BW_BAD_REQUEST` (any other 4xx).
 * Never a stack, a file path or a 5xx error's message.
 *
 * @example
 * const decision = problemFor(error)
 * if (decision) { res.writeHead(decision.status, Object.fromEntries(decision.headers)); res.end(JSON.stringify(decision.body)) }
 */
export function problemFor(error: unknown): RejectDecision | undefined {
  let current = error
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === 'object' && current !== null; depth++) {
    if (isBreakwaterError(current)) {
      const status = current.status
      if (status === undefined || !isErrorStatus(status)) return undefined
      const retryAfter = current.retryAfterSeconds
      const headers = carriedHeaders(current)
      if (retryAfter !== undefined && Number.isFinite(retryAfter) && retryAfter >= 1) {
        headers.push(['Retry-After', String(Math.ceil(retryAfter))])
      }
      return problemResponse(current.code, current.message, headers, status)
    }
    current = (current as { cause?: unknown }).cause
  }
  if (typeof error !== 'object' || error === null) return undefined
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown }
  const clientStatus = typeof status === 'number' ? status : statusCode
  if (typeof clientStatus !== 'number' || !Number.isInteger(clientStatus) || clientStatus < 400 || clientStatus > 499) {
    return undefined
  }
  const code =
    clientStatus === 413
      ? ErrorCode.PayloadTooLarge
      : clientStatus === 415
        ? ErrorCode.UnsupportedMediaType
        : clientStatus === 405
          ? ErrorCode.MethodNotAllowed
          : ErrorCode.BadRequest
  const { message, expose } = error as { message?: unknown; expose?: unknown }
  const detail = typeof message === 'string' && expose !== false ? message.slice(0, MAX_DETAIL) : undefined
  return problemResponse(code, detail, carriedHeaders(error), clientStatus)
}

/**
 * The problem response for `code` from {@link PROBLEMS}: its `type` and `title`, `status` (default: the
 * registry's), `detail` when given, and `Content-Type` appended to `headers` (which it takes over). A status
 * other than the registry's keeps the type; under `about:blank` the title is then that status's reason phrase.
 * A code this copy does not know (another version's) is answered `about:blank`.
 */
export function problemResponse(
  code: string,
  detail: string | undefined,
  headers: Array<[string, string]> = [],
  status = (PROBLEMS as Partial<Record<string, ProblemEntry>>)[code]?.status ?? 500,
): RejectDecision {
  const entry = (PROBLEMS as Partial<Record<string, ProblemEntry>>)[code]
  const type = entry?.type ?? ABOUT_BLANK
  const title =
    entry !== undefined && (type !== ABOUT_BLANK || entry.status === status) ? entry.title : reasonPhrase(status)
  const body: ProblemDetails = { type, title, status, code }
  if (detail !== undefined && detail !== '') body.detail = detail
  headers.push(['Content-Type', PROBLEM_CONTENT_TYPE])
  return { action: 'reject', status, headers, body }
}

/** RFC 9110's reason phrase (Node's table still has the pre-9110 names for 413 and 422). */
function reasonPhrase(status: number): string {
  if (status === 413) return 'Content Too Large'
  if (status === 422) return 'Unprocessable Content'
  return STATUS_CODES[status] ?? 'Error'
}

function isErrorStatus(status: number): boolean {
  return Number.isInteger(status) && status >= 400 && status <= 599
}

/** `Allow` from an http-errors style `headers` object (a {@link MethodNotAllowedError}, your own 405s). */
function carriedHeaders(error: object): Array<[string, string]> {
  const headers = (error as { headers?: unknown }).headers
  const carried: Array<[string, string]> = []
  if (typeof headers !== 'object' || headers === null) return carried
  for (const name of CARRIED_HEADERS) {
    const value = (headers as Record<string, unknown>)[name] ?? (headers as Record<string, unknown>)[name.toLowerCase()]
    if (typeof value === 'string' && /^[\t\x20-\x7e]*$/.test(value)) carried.push([name, value])
  }
  return carried
}
