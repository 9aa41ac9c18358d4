// Koa middleware for the core load shedder: ask it to admit the request, translate the decision. The permit is
// released by the core when the response closes, whatever the handler did.

import {
  createLoadShedder,
  type Decision,
  isPromiseLike,
  type LoadShedder,
  type LoadSheddingOptions,
  type OverloadState,
} from '@breakwater/core'
import type { Context, Middleware, Next } from 'koa'
import { sendRejection } from './reply.js'
import { requestView } from './request-view.js'

/** The middleware returned by {@link loadShedding}, with its shedder (limit, inflight, `overloadState()`). */
export type LoadSheddingMiddleware = Middleware & {
  readonly shedder: LoadShedder
  /** The shedder's state for a readiness probe. */
  overloadState(): OverloadState
}

/**
 * Load-shedding middleware. `app.use()` it first (before body parsers), so shed requests cost next to nothing.
 * Options are checked here: an invalid one throws `BW_INVALID_OPTION`. Over the concurrency limit (adaptive
 * Gradient2 by default) the client gets 503 problem+json (`BW_OVERLOADED`) with a jittered `Retry-After`; a
 * shed request does not call `next`. Keep health probes out with `exclude`.
 *
 * @example
 * const shedding = loadShedding({ exclude: ['/livez', '/readyz'], queue: true })
 * app.use(shedding)
 * // readiness: shedding.overloadState().overloaded
 */
export function loadShedding(options: LoadSheddingOptions = {}): LoadSheddingMiddleware {
  const shedder = createLoadShedder(options)
  function loadSheddingMiddleware(ctx: Context, next: Next): Promise<unknown> | undefined {
    // A throw here (the user's `priority` or `exclude` function) reaches Koa's error handling through koa-compose.
    const decision = shedder.admit(ctx.res, shedder.wantsRequest ? requestView(ctx) : undefined)
    if (isPromiseLike(decision)) return decision.then((settled) => apply(settled, ctx, next))
    return apply(decision, ctx, next)
  }
  return Object.assign(loadSheddingMiddleware, { shedder, overloadState: () => shedder.overloadState() })
}

function apply(decision: Decision, ctx: Context, next: Next): Promise<unknown> | undefined {
  if (ctx.res.destroyed) return undefined // a queued request whose client left: nobody to answer
  if (decision.action === 'reject') {
    sendRejection(ctx, decision)
    return undefined
  }
  return next()
}
