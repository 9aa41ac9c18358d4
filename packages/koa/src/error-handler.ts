// Koa's one Breakwater error handler: every error Breakwater knows becomes its problem+json answer through
// core's errorResponse, a request's own abort stays silent, anything else goes on to Koa's own handling.

import type { RequestContext } from '@breakwater/core'
import { errorResponse } from '@breakwater/core/adapter'
import type { Context, Middleware, Next } from 'koa'
import { sendRejection } from './reply.js'

/**
 * Middleware that answers, with problem+json and a stable `code`, the errors Breakwater knows: any Breakwater
 * error with a `status` (`Retry-After` from its `retryAfterSeconds`), and client errors thrown below it — a body
 * parser's invalid JSON (400 `BW_BAD_REQUEST`), a body over its limit (413 `BW_PAYLOAD_TOO_LARGE`), an
 * unsupported type (415 `BW_UNSUPPORTED_MEDIA_TYPE`), `ctx.throw(4xx)`, and @koa/router's `allowedMethods({ throw:
 * true })` 405 (with `Allow`). A handler failing with its own request's abort after the deadline's answer or
 * the client leaving is silenced (no stack trace in the logs). Other errors are rethrown to Koa. `app.use()` it
 * first, before the timeout.
 *
 * @example
 * app.use(errorHandler())
 * app.use(timeout({ timeoutMs: '5s' }))
 * app.use(bodyParser({ jsonLimit: '100kb' }))
 */
export function errorHandler(): Middleware {
  return async function breakwaterErrors(ctx: Context, next: Next): Promise<void> {
    try {
      await next()
    } catch (error) {
      // A RequestContext whenever timeout() saw the request (typed as the interface only for declaration merging).
      const answer = errorResponse(
        error,
        ctx.breakwater as RequestContext | undefined,
        ctx.res.headersSent,
        undefined,
        true,
      )
      if (answer === 'answered') return
      if (answer === undefined || ctx.headerSent) throw error
      sendRejection(ctx, answer)
    }
  }
}
