// What an attempt's outcome says about trying again: retryable or final, how long the dependency asked us to
// wait (Retry-After), and how to free a result nobody will read (a retried 503, a hedge that lost).

import { isAttemptTimeoutError, isBreakwaterError } from '../errors.js'

/** What one attempt produced: the error it failed with, or the result it resolved with. */
export type Outcome<T = unknown> = { readonly error: unknown } | { readonly result: T }

/** Error codes of a connection that failed or broke: trying again may reach a healthy socket or instance. */
const CONNECTION_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
])

/** Statuses that say "this instance cannot answer now", whatever the request. */
const RETRYABLE_STATUS = new Set([502, 503, 504])

/**
 * Whether trying again could help. Retryable: connection errors (reset, refused, aborted, socket and connect
 * timeouts, undici's socket errors — also when wrapped as the `cause` of fetch's `TypeError: fetch failed`), an
 * `AttemptTimeoutError`, errors carrying a retryable `status`/`statusCode` (or a `response` with one), and results (a fetch `Response`, an undici `request` answer, anything with `status` or
 * `statusCode`) of 502, 503 or 504, or 429 carrying `Retry-After`. Never retryable: every other 4xx and 5xx, any
 * other Breakwater error (an open circuit, a full bulkhead, the caller's deadline or abort) and plain errors.
 *
 * @example
 * import { isRetryableOutcome } from '@breakwater/core'
 *
 * isRetryableOutcome({ result: new Response(null, { status: 503 }) }) // true
 * isRetryableOutcome({ result: new Response(null, { status: 404 }) }) // false
 */
export function isRetryableOutcome(outcome: Outcome): boolean {
  return 'error' in outcome ? isRetryableError(outcome.error) : isRetryableResult(outcome.result)
}

/** @internal {@link isRetryableOutcome} of a result, without wrapping it. */
export function isRetryableResult(result: unknown): boolean {
  const status = statusOf(result)
  if (status === undefined) return false
  if (RETRYABLE_STATUS.has(status)) return true
  return status === 429 && headerOf(result, 'retry-after') !== undefined
}

/** @internal {@link isRetryableOutcome} of an error, without wrapping it. */
export function isRetryableError(error: unknown): boolean {
  if (isAttemptTimeoutError(error)) return true
  // Every other Breakwater error is a decision (open circuit, full bulkhead, the caller's deadline or abort).
  if (isBreakwaterError(error)) return false
  if (typeof error !== 'object' || error === null) return false
  // An HTTP error the work threw for a status (got's HTTPError, a hand-made one): the status decides.
  const response = (error as { response?: unknown }).response
  if (statusOf(error) !== undefined) return isRetryableResult(error)
  if (statusOf(response) !== undefined) return isRetryableResult(response)
  // fetch wraps the socket error: TypeError('fetch failed', { cause }) — and undici may nest once more.
  let current: unknown = error
  for (let depth = 0; depth < 3 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code
    if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}

/**
 * The `Retry-After` of a result (or of an error carrying `headers` or a `response`), in ms from `now`: delta
 * seconds (`"120"`) or an HTTP-date (`"Fri, 04 Dec 2026 19:00:00 GMT"`, 0 when already past). `undefined` when
 * absent or not one of those two forms (`"soon"`, `"-1"`, `"1.5"`).
 *
 * @example
 * import { retryAfterMs } from '@breakwater/core'
 *
 * retryAfterMs({ result: new Response(null, { status: 503, headers: { 'retry-after': '2' } }) }) // 2000
 */
export function retryAfterMs(outcome: Outcome, now: number = Date.now()): number | undefined {
  const source =
    'result' in outcome ? outcome.result : ((outcome.error as { response?: unknown } | null)?.response ?? outcome.error)
  const value = headerOf(source, 'retry-after')
  if (value === undefined) return undefined
  return parseRetryAfter(value, now)
}

/** The three HTTP-date forms of RFC 9110 §5.6.7: IMF-fixdate, obsolete RFC 850, asctime. */
const HTTP_DATE =
  /^(?:[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{6,9}, \d{2}-[A-Za-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT|[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4})$/

/** @internal Retry-After's two forms (RFC 9110 §10.2.3); anything else reads as no header at all. */
export function parseRetryAfter(value: string, now: number): number | undefined {
  const text = value.trim()
  if (/^\d{1,9}$/.test(text)) return Number(text) * 1000
  // Date.parse alone would also take "1", "2026" or "tomorrow 3pm" for dates.
  if (!HTTP_DATE.test(text)) return undefined
  // asctime has no zone; HTTP-dates are always GMT.
  const at = Date.parse(text.endsWith('GMT') ? text : `${text} GMT`)
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}

/**
 * Free a result that will not be returned — a retried 503, a hedge that lost — so its connection is not held:
 * cancels a fetch `Response` body, dumps or destroys an undici `request` body or a Node stream. Anything else is
 * left alone. Never throws.
 *
 * @example
 * import { discardResult } from '@breakwater/core'
 *
 * discardResult(await fetch('http://127.0.0.1:4000/inventory')) // the body is cancelled, the socket freed
 */
export function discardResult(result: unknown): void {
  if (typeof result !== 'object' || result === null) return
  try {
    const body = (result as { body?: unknown }).body
    if (typeof body === 'object' && body !== null) {
      freeStream(body)
      return
    }
    // A Node stream answered directly (http.IncomingMessage).
    if (typeof (result as { pipe?: unknown }).pipe === 'function') freeStream(result)
  } catch {
    // A body that cannot be freed (already used, locked) holds nothing more of ours.
  }
}

function freeStream(stream: object): void {
  const candidate = stream as {
    locked?: boolean
    cancel?: () => Promise<void>
    dump?: () => Promise<void>
    destroy?: () => void
  }
  if (typeof candidate.cancel === 'function') {
    // A web ReadableStream: a locked one is being read by someone else.
    if (candidate.locked !== true) candidate.cancel().catch(ignore)
  } else if (typeof candidate.dump === 'function') {
    // undici's body: reads (at most its small limit) and keeps the connection for reuse.
    candidate.dump().catch(ignore)
  } else if (typeof candidate.destroy === 'function') candidate.destroy()
}

function ignore(): void {}

/** @internal `status` or `statusCode` of a result, when it has one. */
export function statusOf(result: unknown): number | undefined {
  if (typeof result !== 'object' || result === null) return undefined
  const status = (result as { status?: unknown }).status ?? (result as { statusCode?: unknown }).statusCode
  return typeof status === 'number' ? status : undefined
}

/** A header of fetch `Headers` (`headers.get`) or of a plain/undici record (`headers[name]`). */
function headerOf(source: unknown, name: string): string | undefined {
  if (typeof source !== 'object' || source === null) return undefined
  const headers = (source as { headers?: unknown }).headers
  if (typeof headers !== 'object' || headers === null) return undefined
  const value =
    typeof (headers as { get?: unknown }).get === 'function'
      ? (headers as { get(name: string): unknown }).get(name)
      : (headers as Record<string, unknown>)[name]
  if (typeof value === 'string') return value
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0]
  return undefined
}
