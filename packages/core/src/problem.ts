// problem+json bodies (RFC 9457) for every rejection Breakwater produces, and the one path from an error to its
// problem response.

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
 *   `code`, its message as `detail`, and `Retry-After` from its `retryAfterSeconds`;
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
      return rejection(status, current.code, current.message, headers)
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
  return rejection(clientStatus, code, detail, carriedHeaders(error))
}

function rejection(
  status: number,
  code: string,
  detail: string | undefined,
  headers: Array<[string, string]>,
): RejectDecision {
  const body: ProblemDetails = { type: ABOUT_BLANK, title: STATUS_CODES[status] ?? 'Error', status, code }
  if (detail !== undefined && detail !== '') body.detail = detail
  headers.push(['Content-Type', PROBLEM_CONTENT_TYPE])
  return { action: 'reject', status, headers, body }
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
