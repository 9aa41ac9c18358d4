// Koa middleware for the core idempotency policy: ask the policy once the body is parsed, replay or reject, or
// run the downstream middleware and hand the ticket the response Koa is about to send (`ctx.body`).

import {
  createIdempotency,
  type Idempotency,
  type IdempotencyDecision,
  type IdempotencyOptions,
  type IdempotencyTicket,
  isPromiseLike,
} from '@breakwater/core'
import type { Context, Middleware, Next } from 'koa'
import { isStreamedBody, sendRejection } from './reply.js'
import { requestView } from './request-view.js'

/** The middleware returned by {@link idempotency}, with its policy. */
export type IdempotencyMiddleware = Middleware & { readonly policy: Idempotency }

/**
 * Idempotency-Key middleware. Mount it after your body parser (the payload fingerprint reads
 * `ctx.request.body`) and after authentication (so `scope` can name the caller), on the routes that create or
 * change things. Options are checked here (`BW_INVALID_OPTION`). A retry with the same key gets the stored
 * response with `Idempotent-Replayed: true`; one arriving while the first still runs gets 409, a different
 * payload 422. A thrown error or a streamed `ctx.body` is not stored and frees the key.
 *
 * @example
 * app.use(bodyParser())
 * router.post('/orders', idempotency({ required: true, scope: (req) => req.header('authorization') }), createOrder)
 */
export function idempotency(options: IdempotencyOptions = {}): IdempotencyMiddleware {
  const policy = createIdempotency(options)
  function idempotencyMiddleware(ctx: Context, next: Next): Promise<unknown> | undefined {
    // A throw here (a user's `scope` or `fingerprint` function) reaches Koa's error handling through koa-compose.
    // `rawBody` (kept by koa-bodyparser and @koa/bodyparser) makes the fingerprint lossless.
    const request = ctx.request as { body?: unknown; rawBody?: unknown }
    const raw = request.rawBody
    const decision = policy.check(
      requestView(ctx),
      request.body,
      typeof raw === 'string' || raw instanceof Uint8Array ? raw : undefined,
    )
    if (isPromiseLike(decision)) return decision.then((settled) => apply(settled, ctx, next))
    return apply(decision, ctx, next)
  }
  return Object.assign(idempotencyMiddleware, { policy })
}

function apply(decision: IdempotencyDecision, ctx: Context, next: Next): Promise<unknown> | undefined {
  if (decision.action === 'continue') return next()
  if (decision.action === 'reject') sendRejection(ctx, decision)
  else if (decision.action === 'replay') {
    ctx.status = decision.status
    // Headers first: a Buffer body only defaults Content-Type when none is set.
    for (const [name, value] of decision.headers) ctx.set(name, value)
    ctx.body = decision.body
  } else return run(ctx, next, decision.ticket)
  return undefined
}

async function run(ctx: Context, next: Next, ticket: IdempotencyTicket): Promise<void> {
  try {
    await next()
  } catch (error) {
    ticket.abandon('error')
    throw error
  }
  // What Koa's respond() will send: strings and bytes as they are, streams passed through, objects as JSON.
  const body: unknown = ctx.body
  let payload: unknown = body
  if (body !== null && body !== undefined && typeof body === 'object' && !(body instanceof Uint8Array)) {
    payload = isStreamedBody(body) ? body : JSON.stringify(body)
  }
  await ticket.finish(ctx.status, (name) => ctx.response.get(name) || undefined, payload)
}
