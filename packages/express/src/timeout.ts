// Express middleware for the core timeout policy: arm the request's deadline, expose its lifecycle as
// `req.breakwater`, answer 503 at the deadline and make the handler's late writes harmless.

import { IncomingMessage } from 'node:http'
import {
  createTimeout,
  type RequestContext,
  type RequestLifecycle,
  type Timeout,
  type TimeoutOptions,
} from '@breakwater/core'
import {
  type ExpiryHandler,
  guardLateWrites,
  handlerSettled,
  prepareRejection,
  responseEnded,
} from '@breakwater/core/adapter'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { sendRejection } from './reply.js'
import { requestView, stateHolder } from './request-view.js'

declare global {
  namespace Express {
    interface Request {
      /**
       * The request's lifecycle: `signal` (aborted at the deadline, on client disconnect or shutdown),
       * `deadline`, `remainingMs()`, `timeoutSignal(ms)`, `requireBudget(ms)`, `forwardHeaders()`. Set by
       * `timeout()`, and typed as always there (like `req.session` of express-session): mount `timeout()`
       * before the routes that read it. On a request `timeout()` did not see it is `undefined`.
       */
      breakwater: RequestLifecycle
    }
  }
}

/** The middleware returned by {@link timeout}, with its policy. */
export type TimeoutMiddleware = RequestHandler & { readonly policy: Timeout }

/** At the deadline (or shutdown): the problem if nothing was sent yet, else cut the started response. */
const onExpire: ExpiryHandler<Response> = (decision, res, context) => {
  if (res.headersSent) {
    res.destroy() // already streaming: end it rather than leave the client hanging on a half response
    return
  }
  prepareRejection(res) // drops the handler's headers (a held 201's ETag, Location); closes a half-read body
  sendRejection(res, decision) // synchronous in Express: the 503 is written before the guard goes up
  guardLateWrites(res, context)
}

/** Under this key of the state holder (`res.locals`): the context `req.breakwater` answers with. */
const EXPOSED = Symbol('breakwater.timeoutContext')
/** The request prototype `req.breakwater` was last checked on (usually the app's, the same for every request). */
let exposedOn: object | undefined

/**
 * Make `req.breakwater` answer `context`. Express requests inherit from their app's `request` object, so the
 * property is an accessor defined there once, reading the context kept in `res.locals`: an own property on each
 * `req` would cost every request several µs (see `stateHolder`). Assigning `req.breakwater` still works (it
 * becomes an own property). Without `res.locals`, or on a plain Node request, it is an own property.
 */
function expose(req: Request, res: Response, holder: object, context: RequestContext): void {
  const proto: object | null = Object.getPrototypeOf(req)
  if (holder === res || proto === null || proto === IncomingMessage.prototype) {
    req.breakwater = context
    return
  }
  ;(holder as { [EXPOSED]?: RequestContext })[EXPOSED] = context
  if (proto === exposedOn) return
  if (!Object.hasOwn(proto, 'breakwater')) Object.defineProperty(proto, 'breakwater', EXPOSED_PROPERTY)
  exposedOn = proto
}

const EXPOSED_PROPERTY: PropertyDescriptor = {
  configurable: true,
  enumerable: false,
  get(this: Request): RequestContext | undefined {
    const res = this.res
    return res === undefined ? undefined : (stateHolder(res) as { [EXPOSED]?: RequestContext })[EXPOSED]
  },
  set(this: Request, value: unknown): void {
    Object.defineProperty(this, 'breakwater', { value, writable: true, configurable: true, enumerable: true })
  },
}

/**
 * Timeout middleware. `app.use()` it for every route; mount another on a route to give that route its own
 * budget (it replaces the app's, counted from the start of the request). Options are checked here: an invalid
 * one throws `BW_INVALID_OPTION`. At the deadline `req.breakwater.signal` aborts and the client gets 503
 * problem+json (`BW_TIMEOUT`); writes the handler makes afterwards are dropped and reported once on
 * `breakwater:timeout:late-write`. Mount `errorHandler()` to answer a handler's
 * `DeadlineExceededError` with 504 problem+json (without it, your error handler sees `err.status === 504`).
 *
 * @example
 * app.use(timeout({ timeoutMs: '5s' }))
 * app.get('/report', timeout({ timeoutMs: '30s' }), async (req, res) => {
 *   const rows = await db.query(sql, { signal: req.breakwater.signal })
 *   res.json(rows)
 * })
 * app.use(errorHandler())
 */
export function timeout(options: TimeoutOptions = {}): TimeoutMiddleware {
  const policy = createTimeout(options)
  function timeoutMiddleware(req: Request, res: Response, next: NextFunction): void {
    const holder = stateHolder(res)
    // Reported below once next() returns, so a handler that answers in this turn (most do) never puts a `close`
    // listener on its response; one still running or streaming then is timed until the response closes.
    const view = policy.wantsRequest ? requestView(req, res) : undefined
    const context = policy.start(res, view, onExpire, res, holder, true)
    expose(req, res, holder, context)
    const reason = context.abortReason
    if (reason !== undefined) {
      // Over budget before the handler ran (a trusted caller sent 0 ms), or shutting down: answer now.
      const decision = policy.decisionFor(reason)
      if (decision !== undefined && !res.headersSent) sendRejection(res, decision)
      return
    }
    next()
    handlerSettled(context, responseEnded(res))
  }
  return Object.assign(timeoutMiddleware, { policy })
}
