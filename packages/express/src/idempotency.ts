// Express middleware for the core idempotency policy: ask the policy once the body is parsed, then translate
// its decision — replay or reject, or run the handler while capturing what it writes for the ticket.

import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  createIdempotency,
  type Idempotency,
  type IdempotencyDecision,
  type IdempotencyOptions,
  type IdempotencyTicket,
  isPromiseLike,
  type MaybePromise,
} from '@breakwater/core'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { sendRejection } from './reply.js'
import { requestView } from './request-view.js'

/** The middleware returned by {@link idempotency}, with its policy. */
export type IdempotencyMiddleware = RequestHandler & { readonly policy: Idempotency }

type End = (chunk?: unknown, encoding?: unknown, callback?: unknown) => Response

/**
 * Idempotency-Key middleware. Mount it after your body parser (the payload fingerprint reads `req.body`, and the
 * raw body when the parser was given `verify: keepRawBody`) and
 * after authentication (so `scope` can name the caller), on the routes that create or change things. Options
 * are checked here (`BW_INVALID_OPTION`). A retry with the same key gets the stored response with
 * `Idempotent-Replayed: true`; one arriving while the first still runs gets 409, a different payload 422.
 * Everything the handler writes through `res.json`, `res.send` or `res.end` is captured; a response written
 * with `res.write` (a stream, `sendFile`) passes through unstored and frees the key.
 *
 * @example
 * app.use(express.json())
 * app.post('/orders', idempotency({ required: true, scope: (req) => req.header('authorization') }), createOrder)
 */
export function idempotency(options: IdempotencyOptions = {}): IdempotencyMiddleware {
  const policy = createIdempotency(options)
  function idempotencyMiddleware(req: Request, res: Response, next: NextFunction): void {
    let decision: MaybePromise<IdempotencyDecision>
    try {
      decision = policy.check(requestView(req, res), req.body, rawBodyOf(req))
    } catch (error) {
      next(error) // a user's `scope` or `fingerprint` function threw: Express's error handlers answer
      return
    }
    if (isPromiseLike(decision)) decision.then((settled) => apply(settled, res, next)).catch(next)
    else apply(decision, res, next)
  }
  return Object.assign(idempotencyMiddleware, { policy })
}

/** Where {@link keepRawBody} leaves the bytes: a symbol, so no app property is shadowed. */
const RAW_BODY = Symbol.for('breakwater.rawBody')

function rawBodyOf(req: Request): Buffer | undefined {
  return (req as { [RAW_BODY]?: Buffer })[RAW_BODY]
}

/**
 * A `verify` function for Express's body parsers that keeps the raw body for the idempotency fingerprint, so
 * payloads that differ only where JSON.parse loses precision (integers above 2^53, long decimals) are told
 * apart. Costs one reference per request; the parser keeps its own limit.
 *
 * @example
 * app.use(express.json({ limit: '100kb', verify: keepRawBody }))
 */
export function keepRawBody(req: IncomingMessage, _res: ServerResponse, body: Buffer): void {
  ;(req as { [RAW_BODY]?: Buffer })[RAW_BODY] = body
}

function apply(decision: IdempotencyDecision, res: Response, next: NextFunction): void {
  if (res.headersSent) {
    // Another middleware (a timeout, say) answered while the store was deciding: nothing will run.
    if (decision.action === 'execute') decision.ticket.abandon('aborted')
    return
  }
  if (decision.action === 'continue') next()
  else if (decision.action === 'reject') sendRejection(res, decision)
  else if (decision.action === 'replay') {
    res.status(decision.status)
    for (const [name, value] of decision.headers) res.setHeader(name, value)
    res.end(decision.body)
  } else {
    capture(res, decision.ticket)
    next()
  }
}

/** Route the handler's response through the ticket; `end` waits until the record is stored. */
function capture(res: Response, ticket: IdempotencyTicket): void {
  const write = res.write
  const end = res.end as unknown as End
  const restore = (): void => {
    if (res.write === captureWrite) res.write = write
    if ((res.end as unknown) === captureEnd) res.end = end as unknown as Response['end']
  }
  const captureWrite = function (this: Response, ...args: Parameters<Response['write']>): boolean {
    restore()
    ticket.abandon('streamed') // a streamed body is passed through, never held in memory
    return write.apply(this, args)
  } as Response['write']
  const captureEnd = function (this: Response, chunk?: unknown, encoding?: unknown, callback?: unknown): Response {
    restore()
    let body = chunk
    let enc = encoding
    if (typeof body === 'function') [body, enc, callback] = [undefined, undefined, body]
    else if (typeof enc === 'function') [enc, callback] = [undefined, enc]
    const stored = ticket.finish(
      res.statusCode,
      (name) => res.getHeader(name),
      body,
      typeof enc === 'string' ? (enc as BufferEncoding) : undefined,
    )
    if (stored === undefined) return end.call(this, chunk, encoding, callback)
    stored.then(() => end.call(this, chunk, encoding, callback))
    return this
  }
  res.write = captureWrite
  res.end = captureEnd as unknown as Response['end']
}
