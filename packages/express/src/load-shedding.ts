// Express middleware for the core load shedder: ask it to admit the request, translate the decision. The permit
// is released by the core when the response closes, whatever the handler did.

import {
  createLoadShedder,
  type Decision,
  isPromiseLike,
  type LoadShedder,
  type LoadSheddingOptions,
  type OverloadState,
} from '@breakwater/core'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { sendRejection } from './reply.js'
import { requestView, stateHolder } from './request-view.js'

/** The middleware returned by {@link loadShedding}, with its shedder (limit, inflight, `overloadState()`). */
export type LoadSheddingMiddleware = RequestHandler & {
  readonly shedder: LoadShedder
  /** The shedder's state for a readiness probe. */
  overloadState(): OverloadState
}

/**
 * Load-shedding middleware. `app.use()` it early (before body parsers), so shed requests cost next to nothing.
 * Options are checked here: an invalid one throws `BW_INVALID_OPTION`. Over the concurrency limit (adaptive
 * Gradient2 by default) the client gets 503 problem+json (`BW_OVERLOADED`) with a jittered `Retry-After`.
 * Keep health probes out with `exclude`.
 *
 * @example
 * const shedding = loadShedding({ exclude: ['/livez', '/readyz'], queue: true })
 * app.use(shedding)
 * app.get('/search', search)
 * // readiness: shedding.overloadState().overloaded
 */
export function loadShedding(options: LoadSheddingOptions = {}): LoadSheddingMiddleware {
  const shedder = createLoadShedder(options)
  function loadSheddingMiddleware(req: Request, res: Response, next: NextFunction): void {
    let decision: Decision | Promise<Decision>
    let holder: object
    try {
      const view = shedder.wantsRequest ? requestView(req, res) : undefined
      holder = view?.holder ?? stateHolder(res)
      // A permit granted now is released below if the handler answers before next() returns (most do), so the
      // response gets a `close` listener only when it is still being written then.
      decision = shedder.admit(res, view, undefined, holder, true)
    } catch (error) {
      next(error) // the user's `priority` or `exclude` function threw: Express's error handlers answer
      return
    }
    if (isPromiseLike(decision)) decision.then((settled) => applyLater(settled, res, next), next)
    else if (decision.action === 'reject') sendRejection(res, decision)
    else {
      next() // decided in this turn: nothing can have answered meanwhile
      shedder.handedOn(res, holder)
    }
  }
  return Object.assign(loadSheddingMiddleware, { shedder, overloadState: () => shedder.overloadState() })
}

/** A queued request's decision. */
function applyLater(decision: Decision, res: Response, next: NextFunction): void {
  // A queued request may have outlived its client, or been answered by another middleware (a timeout).
  if (res.headersSent || res.destroyed) return
  if (decision.action === 'reject') sendRejection(res, decision)
  else next()
}
