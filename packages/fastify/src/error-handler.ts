// Fastify's one Breakwater error handler: every error Breakwater knows becomes its problem+json answer through
// core's errorResponse, a request's own abort stays silent, anything else goes on to the parent handler.

import { errorResponse } from '@breakwater/core/adapter'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { sendRejection } from './reply.js'
import { contextOf } from './timeout.js'

/** A handler for `app.setErrorHandler()`. */
export type BreakwaterErrorHandler = (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => void

/**
 * An error handler for `app.setErrorHandler()` that answers, with problem+json and a stable `code`, the errors
 * Breakwater knows: any Breakwater error with a `status` (`Retry-After` from its `retryAfterSeconds`), and
 * Fastify's client errors — invalid JSON and other `FST_ERR_CTP_*` parse errors (400 `BW_BAD_REQUEST`), a body
 * over `bodyLimit` (413 `BW_PAYLOAD_TOO_LARGE`), an unsupported media type (415 `BW_UNSUPPORTED_MEDIA_TYPE`),
 * schema validation failures (400). A handler failing with its own request's abort once the answer went out or
 * the client left is silenced. Other errors are passed to the parent error handler (Fastify's default).
 *
 * @example
 * app.setErrorHandler(errorHandler())
 */
export function errorHandler(): BreakwaterErrorHandler {
  return function breakwaterErrors(error, request, reply): void {
    const answer = errorResponse(error, contextOf(request) ?? undefined, reply.sent, undefined, true)
    if (answer === 'answered') return
    if (answer === undefined)
      reply.send(error) // from an error handler, the parent error handler answers
    else sendRejection(reply, answer)
  }
}
