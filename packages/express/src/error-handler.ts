// Express's one Breakwater error handler: every error Breakwater knows becomes its problem+json answer through
// core's errorResponse, a request's own abort stays silent, anything else goes on to the app's handlers.

import type { RequestContext } from '@breakwater/core'
import { errorResponse } from '@breakwater/core/adapter'
import type { ErrorRequestHandler, NextFunction, Request, Response } from 'express'
import { sendRejection } from './reply.js'

/**
 * Error middleware that answers, with problem+json and a stable `code`, the errors Breakwater knows:
 * - a handler's `DeadlineExceededError` (504 `BW_DEADLINE_EXCEEDED`), and any Breakwater error with a `status`
 *   (with `Retry-After` from its `retryAfterSeconds`);
 * - the body parser's client errors: invalid JSON (400 `BW_BAD_REQUEST`), a body over the limit (413
 *   `BW_PAYLOAD_TOO_LARGE`), an unsupported encoding (415 `BW_UNSUPPORTED_MEDIA_TYPE`) — never Express's HTML
 *   page with a stack trace.
 * A handler that fails with its own request's abort after the deadline's 503 went out, or after the client left,
 * is silenced: no second answer, no stack trace in the logs. Other errors go to the next error handler. Mount it
 * after your routes.
 *
 * @example
 * app.use(express.json({ limit: '100kb' }))
 * app.post('/orders', createOrder)
 * app.use(errorHandler())
 * app.use((err, req, res, next) => { log(err); res.status(500).json({ error: 'internal' }) })
 */
export function errorHandler(): ErrorRequestHandler {
  return function breakwaterErrors(error: unknown, req: Request, res: Response, next: NextFunction): void {
    // A RequestContext whenever timeout() saw the request (typed as the interface only for declaration merging).
    const answer = errorResponse(error, req.breakwater as RequestContext | undefined, res.headersSent, undefined, true)
    if (answer === 'answered') return
    if (answer === undefined) next(error)
    else sendRejection(res, answer)
  }
}

/** @deprecated The same handler under its former name; use {@link errorHandler}. */
export const timeoutErrorHandler = errorHandler
