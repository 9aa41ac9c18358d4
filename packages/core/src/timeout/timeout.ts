// The timeout policy: gives each request a budget (the route's timeout, or less when a trusted caller says so),
// arms its context's deadline, and answers 503 at the deadline or 504 when an upstream deadline failed the handler.

import type { ServerResponse } from 'node:http'
import type { RejectDecision } from '../decision.js'
import {
  type BreakwaterError,
  ErrorCode,
  InvalidOptionError,
  isBreakwaterError,
  isDeadlineExceededError,
  isRequestAbortedError,
} from '../errors.js'
import { channels } from '../events.js'
import { type Duration, duration, knownOptions, optionKeys } from '../internal/validate.js'
import { PROBLEM_CONTENT_TYPE, type ProblemDetails, problemFor } from '../problem.js'
import type { HeaderList, RequestView } from '../request-view.js'
import {
  type ContextPolicy,
  DEFAULT_DEADLINE_HEADER,
  type ExpiryHandler,
  MAX_TIMEOUT_MS,
  type RequestContext,
} from './request-context.js'
import { armContext, armResponseContext, type handlerSettled, settleContext } from './response-lifecycle.js'

/** Options of {@link createTimeout} and of every framework adapter's timeout middleware. */
export interface TimeoutOptions {
  /** Names the policy in events. Default `"timeout"`. */
  id?: string
  /**
   * The request's budget: ms, or a string like `"500ms"`, `"10s"`. Default `10_000` — well under the 60 s idle
   * timeouts of common load balancers and proxies, so the service answers before they give up on it.
   */
  timeoutMs?: Duration
  /**
   * Header carrying a remaining budget in whole milliseconds: read from trusted callers, written by
   * `forwardHeaders()`. Default `"Request-Timeout-Ms"`.
   */
  header?: string
  /**
   * Honour the caller's `header`: the request's budget becomes the smaller of the caller's and `timeoutMs` —
   * never larger. Only for callers you trust (your own gateway or services): `true` for all, or a function that
   * decides per request (e.g. by `request.ip`). Default `false`: the header is ignored.
   */
  trustDeadlineHeader?: boolean | ((request: RequestView) => boolean)
  /** `detail` of the 503 problem body. Default "The request did not complete within its deadline." */
  message?: string
}

/** A timeout policy usable with or without HTTP; adapters call {@link Timeout.start} once per request. */
export interface Timeout extends ContextPolicy {
  /** The configured budget in milliseconds. */
  readonly timeoutMs: number
  /** Answer when a handler failed with a DeadlineExceededError (504). */
  readonly deadlineExceeded: RejectDecision
  /** The budget of one request: `timeoutMs`, or less when a trusted caller's header says so. */
  budgetOf(request: RequestView): number
  /**
   * Arm the deadline of the request answered by `res`: its {@link RequestContext} (created if needed) gets this
   * policy's budget counted from the request's start, replacing any earlier policy's (so a per-route timeout
   * overrides the app's). At the deadline, or on shutdown, `onExpire(decision, target, context)` runs while the
   * request is open. Check `context.abortKind` afterwards: when set, the request is already over budget (or the
   * process is shutting down) and should be answered with {@link Timeout.decisionFor} without running the handler.
   * `request` may be left out while {@link Timeout.wantsRequest} is false. `holder` is where the context is
   * kept, as for {@link requestContext} (default `res`). With `settledByHandler`, the adapter promises to call
   * {@link handlerSettled} when the handler is done: until then (or until something reads the signal, or the
   * deadline comes) no `close` listener is put on the response — a request that finishes in time never needs one.
   */
  start<T>(
    res: ServerResponse,
    request: RequestView | undefined,
    onExpire: ExpiryHandler<T>,
    target: T,
    holder?: object,
    settledByHandler?: boolean,
  ): RequestContext
  /**
   * Whether {@link Timeout.start} reads the request: a trusted deadline header, or a subscriber to the timeout
   * events (which carry it). When false, adapters skip building a request view.
   */
  readonly wantsRequest: boolean
  /** Arm a context that is not tied to a response (see {@link Timeout.start}). */
  arm<T>(context: RequestContext, request: RequestView | undefined, onExpire?: ExpiryHandler<T>, target?: T): boolean
  /**
   * The rejection for an error a handler failed with: 504 for a {@link DeadlineExceededError}, 503 for the
   * request's own timeout or shutdown reason, 503 + `Retry-After` for a `CircuitOpenError` or
   * `BulkheadFullError`, 504 for an `AttemptTimeoutError`, `undefined` for anything else (let the framework
   * handle it).
   * Records the outcome on `context` so it is published once.
   */
  decisionFor(error: unknown, context?: RequestContext): RejectDecision | undefined
}

const DEFAULT_ID = 'timeout'
const DEFAULT_TIMEOUT_MS = 10_000
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const DIGITS = /^\s*\d{1,10}\s*$/
const MAX_CAUSE_DEPTH = 4

/**
 * `about:blank` rather than a registered type: RFC 9457 §4.2.1 reserves it for problems whose meaning is the
 * status code's, and a deadline is exactly "503 Service Unavailable" / "504 Gateway Timeout". The IANA
 * `temporary-reduced-capacity` type means the server lowered a quota, which a slow request is not.
 */
const ABOUT_BLANK = 'about:blank'

const CONTENT_TYPE: HeaderList = [['Content-Type', PROBLEM_CONTENT_TYPE]]

const DEADLINE_EXCEEDED: RejectDecision = freezeDecision(504, CONTENT_TYPE, {
  type: ABOUT_BLANK,
  title: 'Gateway Timeout',
  status: 504,
  detail: 'An upstream call did not complete within the request’s deadline.',
  code: ErrorCode.DeadlineExceeded,
})

const SHUTDOWN: RejectDecision = freezeDecision(503, [['Connection', 'close'], ...CONTENT_TYPE], {
  type: ABOUT_BLANK,
  title: 'Service Unavailable',
  status: 503,
  detail: 'The server is shutting down; retry on another instance.',
  code: ErrorCode.Shutdown,
})

/** Every option of timeout; any other key is an error naming it. */
const OPTIONS = optionKeys<TimeoutOptions>()(['id', 'timeoutMs', 'header', 'trustDeadlineHeader', 'message'])

/**
 * Create a timeout policy. Options are checked here; an invalid one throws {@link InvalidOptionError} naming it.
 *
 * @example
 * const timeout = createTimeout({ timeoutMs: '2s', trustDeadlineHeader: (req) => req.ip === '10.0.0.5' })
 * // framework-free: give a job the same budget semantics
 * const context = new RequestContext()
 * timeout.arm(context, undefined)
 * try { await job(context.signal) } catch (err) { timeout.decisionFor(err, context) } finally { context.dispose() }
 */
export function createTimeout(options: TimeoutOptions = {}): Timeout {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('timeout', options, OPTIONS)
  const id = options.id ?? DEFAULT_ID
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
    throw new InvalidOptionError('id', id, 'a non-empty string of at most 64 characters')
  }
  const timeoutMs = duration('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  if (timeoutMs > MAX_TIMEOUT_MS) {
    throw new InvalidOptionError('timeoutMs', options.timeoutMs, `at most ${MAX_TIMEOUT_MS} ms (about 24.8 days)`)
  }
  const header = options.header ?? DEFAULT_DEADLINE_HEADER
  if (typeof header !== 'string' || !TOKEN.test(header)) {
    throw new InvalidOptionError('header', header, 'an HTTP header name')
  }
  const headerKey = header.toLowerCase()
  const trust = options.trustDeadlineHeader ?? false
  if (typeof trust !== 'boolean' && typeof trust !== 'function') {
    throw new InvalidOptionError('trustDeadlineHeader', trust, 'a boolean or a function of the request')
  }
  const message = options.message ?? 'The request did not complete within its deadline.'
  if (typeof message !== 'string') throw new InvalidOptionError('message', message, 'a string')

  const timedOut = freezeDecision(503, CONTENT_TYPE, {
    type: ABOUT_BLANK,
    title: 'Service Unavailable',
    status: 503,
    detail: message,
    code: ErrorCode.Timeout,
  })

  const budgetOf = (request: RequestView): number => {
    if (trust === false) return timeoutMs
    const raw = request.header(headerKey)
    if (raw === undefined || !DIGITS.test(raw)) return timeoutMs // absent or malformed: the route's own budget
    if (trust !== true && !trust(request)) return timeoutMs
    const incoming = Number(raw)
    return Math.min(incoming, timeoutMs)
  }

  const policy: Timeout = {
    id,
    header,
    timeoutMs,
    timedOut,
    shutdown: SHUTDOWN,
    deadlineExceeded: DEADLINE_EXCEEDED,
    budgetOf,
    get wantsRequest() {
      return trust !== false || channels.timeoutDecision.hasSubscribers || channels.timeoutLateWrite.hasSubscribers
    },
    start(res, request, onExpire, target, holder = res, settledByHandler = false) {
      const budget = request === undefined ? timeoutMs : budgetOf(request)
      // Subscribers hear `client_gone` when it happens, so their requests listen from the start.
      const watch = !settledByHandler || channels.timeoutDecision.hasSubscribers
      return armResponseContext(res, holder, budget, policy, request, onExpire, target, watch)
    },
    arm(context, request, onExpire, target) {
      const budget = request === undefined ? timeoutMs : budgetOf(request)
      return armContext<unknown>(context, budget, policy, request, onExpire as ExpiryHandler<unknown>, target)
    },
    decisionFor(error, context) {
      // Node's own APIs (timers/promises, events.once, stream.pipeline, fs) reject with an AbortError whose
      // `cause` is the signal's reason, so look a few causes deep.
      let current = error
      for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === 'object' && current !== null; depth++) {
        if (isDeadlineExceededError(current)) {
          if (context !== undefined) settleContext(context, 'deadline_exceeded')
          return DEADLINE_EXCEEDED
        }
        if (isRequestAbortedError(current)) {
          return current.kind === 'timeout' ? timedOut : current.kind === 'shutdown' ? SHUTDOWN : undefined
        }
        if (isBreakwaterError(current) && OUTBOUND_CODES.has(current.code)) return problemFor(current)
        current = (current as { cause?: unknown }).cause
      }
      return undefined
    },
  }
  return policy
}

/**
 * The outbound policies' errors a handler lets escape (open circuit, full bulkhead: 503 + Retry-After; attempt
 * timeout: 504) are answered on the timeout's error path too, through the one core {@link problemFor}, so a
 * route under the timeout policy answers them even before the app mounts `errorHandler`.
 */
const OUTBOUND_CODES: ReadonlySet<string> = new Set([
  ErrorCode.CircuitOpen,
  ErrorCode.BulkheadFull,
  ErrorCode.AttemptTimeout,
])

function freezeDecision(status: number, headers: HeaderList, body: ProblemDetails): RejectDecision {
  return Object.freeze({
    action: 'reject',
    status,
    headers: Object.freeze(headers.map((pair) => Object.freeze([...pair] as const))),
    body: Object.freeze(body),
  })
}
