// Express middleware for the core rate limiter: build the request view, ask the limiter, translate the
// decision. Synchronous stores answer without a microtask hop.

import {
  createRateLimiter,
  type Decision,
  isPromiseLike,
  type MaybePromise,
  type RateLimiter,
  type RateLimitOptions,
} from '@breakwater/core'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { appendHeaders, sendRejection } from './reply.js'
import { type ExpressRequestView, requestView } from './request-view.js'

/** The middleware returned by {@link rateLimit}, with its limiter for `reset`, `peek` and `consume`. */
export type RateLimitMiddleware = RequestHandler & { readonly limiter: RateLimiter }

/**
 * Rate-limit middleware. Mount it with `app.use()` for every route, or on one route for a per-route limit.
 * Options are checked here: an invalid one throws `BW_INVALID_OPTION`. The client is `req.ip`, so Express's
 * `trust proxy` setting decides which address that is.
 *
 * @example
 * app.use(rateLimit({ limit: 100, windowMs: '1m' }))
 * app.post('/login', rateLimit({ id: 'login', limit: 5, windowMs: '15m' }), login)
 *
 * const limiter = rateLimit({ limit: 10, windowMs: '1m' })
 * await limiter.limiter.reset(req.ip) // forgive a client after a CAPTCHA
 */
export function rateLimit(options: RateLimitOptions = {}): RateLimitMiddleware {
  const limiter = createRateLimiter(options)
  function rateLimitMiddleware(req: Request, res: Response, next: NextFunction): void {
    let decision: MaybePromise<Decision>
    const view = requestView(req, res)
    try {
      decision = limiter.check(view, res)
    } catch (error) {
      next(error) // a user's `key`, `cost` or `skip` function threw: Express's error handlers answer
      return
    }
    if (isPromiseLike(decision)) decision.then((settled) => applyLater(settled, res, view, next)).catch(next)
    else apply(decision, res, view, next)
  }
  return Object.assign(rateLimitMiddleware, { limiter })
}

/** A remote store's decision: another middleware (a timeout, say) may have answered while it was deciding. */
function applyLater(decision: Decision, res: Response, view: ExpressRequestView, next: NextFunction): void {
  if (!res.headersSent) apply(decision, res, view, next)
}

/**
 * Apply a decision made in the same turn as the request arrived: nothing can have answered meanwhile, so no
 * `res.headersSent` check — on Express every read of a `res` property costs more than on Node's own objects.
 */
function apply(decision: Decision, res: Response, view: ExpressRequestView, next: NextFunction): void {
  if (decision.action === 'reject') sendRejection(res, decision)
  else {
    if (decision.headers !== undefined) {
      appendHeaders(res, decision.headers, !view.rateLimitHeaders)
      view.rateLimitHeaders = true
    }
    next()
  }
}
