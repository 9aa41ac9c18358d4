// Koa middleware for the core rate limiter: build the request view, ask the limiter, translate the decision.
// Synchronous stores answer without a microtask hop.

import {
  createRateLimiter,
  type Decision,
  isPromiseLike,
  type RateLimiter,
  type RateLimitOptions,
} from '@breakwater/core'
import type { Context, Middleware, Next } from 'koa'
import { appendHeaders, sendRejection } from './reply.js'
import { type KoaRequestView, requestView } from './request-view.js'

/** The middleware returned by {@link rateLimit}, with its limiter for `reset`, `peek` and `consume`. */
export type RateLimitMiddleware = Middleware & { readonly limiter: RateLimiter }

/**
 * Rate-limit middleware. `app.use()` it for every route, or pass it to one @koa/router route for a per-route
 * limit. Options are checked here: an invalid one throws `BW_INVALID_OPTION`. The client is `ctx.ip`, so
 * `app.proxy` (and `app.maxIpsCount`) decide which address that is. A rejected request does not call `next`.
 *
 * @example
 * app.use(rateLimit({ limit: 100, windowMs: '1m' }))
 * router.post('/login', rateLimit({ id: 'login', limit: 5, windowMs: '15m' }), login)
 *
 * const limiter = rateLimit({ limit: 10, windowMs: '1m' })
 * await limiter.limiter.reset(ctx.ip) // forgive a client after a CAPTCHA
 */
export function rateLimit(options: RateLimitOptions = {}): RateLimitMiddleware {
  const limiter = createRateLimiter(options)
  function rateLimitMiddleware(ctx: Context, next: Next): Promise<unknown> | undefined {
    // A throw here (a user's `key` or `cost` function) reaches Koa's error handling through koa-compose.
    const view = requestView(ctx)
    const decision = limiter.check(view, ctx.res)
    if (isPromiseLike(decision)) return decision.then((settled) => apply(settled, ctx, view, next))
    return apply(decision, ctx, view, next)
  }
  return Object.assign(rateLimitMiddleware, { limiter })
}

function apply(decision: Decision, ctx: Context, view: KoaRequestView, next: Next): Promise<unknown> | undefined {
  if (decision.action === 'reject') {
    sendRejection(ctx, decision)
    return undefined
  }
  if (decision.headers !== undefined) {
    appendHeaders(ctx, decision.headers, !view.rateLimitHeaders)
    view.rateLimitHeaders = true
  }
  return next()
}
