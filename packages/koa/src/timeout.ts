// Koa middleware for the core timeout policy: arm the request's deadline, expose its lifecycle as
// `ctx.breakwater`, answer 503 at the deadline while the handler may still be running, and keep late writes harmless.

import {
  createTimeout,
  type RequestContext,
  type RequestLifecycle,
  type Timeout,
  type TimeoutOptions,
} from '@breakwater/core'
import {
  type ExpiryHandler,
  errorResponse,
  guardLateWrites,
  handlerSettled,
  prepareRejection,
  reportLateWrite,
} from '@breakwater/core/adapter'
import type { Context, Middleware, Next } from 'koa'
import { isStreamedBody, sendRejection } from './reply.js'
import { requestView } from './request-view.js'

declare module 'koa' {
  interface DefaultContext {
    /**
     * The request's lifecycle: `signal` (aborted at the deadline, on client disconnect or shutdown),
     * `deadline`, `remainingMs()`, `timeoutSignal(ms)`, `requireBudget(ms)`, `forwardHeaders()`. Set by
     * `timeout()`, and typed as always there (like `ctx.session` of koa-session): mount `timeout()` before the
     * middleware that reads it. On a request `timeout()` did not see it is `undefined`.
     */
    breakwater: RequestLifecycle
  }
}

/** The middleware returned by {@link timeout}, with its policy. */
export type TimeoutMiddleware = Middleware & { readonly policy: Timeout }

/**
 * At the deadline (or shutdown): Koa writes a response only once the whole middleware chain settles, and the
 * handler has not, so write the problem now and tell Koa not to respond again. A started response is cut.
 */
const onExpire: ExpiryHandler<Context> = (decision, ctx, context) => {
  const res = ctx.res
  if (res.headersSent) {
    res.destroy() // already streaming: end it rather than leave the client hanging on a half response
    return
  }
  prepareRejection(res) // drops the handler's headers (ETag, Location); closes a half-read body
  sendRejection(ctx, decision)
  ctx.respond = false
  const body = ctx.body as string
  res.end(body)
  guardLateWrites(res)
  // Koa's setters ignore writes once headers are sent, silently: trap `ctx.body` / `ctx.status` on this one
  // response so a handler answering late is reported (once) instead of vanishing.
  for (const field of LATE_FIELDS) {
    const value = field === 'body' ? body : decision.status
    Object.defineProperty(ctx.response, field, {
      configurable: true,
      get: () => value,
      set: () => reportLateWrite(context, field),
    })
  }
}

const LATE_FIELDS = ['body', 'status'] as const

/**
 * Timeout middleware. `app.use()` it first for every route; pass another to one @koa/router route to give it its
 * own budget (it replaces the app's, counted from the start of the request). Options are checked here: an
 * invalid one throws `BW_INVALID_OPTION`. At the deadline `ctx.breakwater.signal` aborts and the client gets 503
 * problem+json (`BW_TIMEOUT`) at once; middleware above sees `ctx.status === 503` when the handler returns. A
 * handler failing with `DeadlineExceededError` gets 504 (`BW_DEADLINE_EXCEEDED`); one failing after its 503 went
 * out is silenced.
 *
 * @example
 * app.use(timeout({ timeoutMs: '5s' }))
 * router.get('/report', timeout({ timeoutMs: '30s' }), async (ctx) => {
 *   ctx.body = await db.query(sql, { signal: ctx.breakwater.signal })
 * })
 */
export function timeout(options: TimeoutOptions = {}): TimeoutMiddleware {
  const policy = createTimeout(options)
  function timeoutMiddleware(ctx: Context, next: Next): Promise<unknown> | undefined {
    // Reported below when the chain settles, so a request that finishes in time never listens to its response.
    const context = policy.start(
      ctx.res,
      policy.wantsRequest ? requestView(ctx) : undefined,
      onExpire,
      ctx,
      ctx.res,
      true,
    )
    ctx.breakwater = context
    const reason = context.abortReason
    if (reason !== undefined) {
      // Over budget before the handler ran (a trusted caller sent 0 ms), or shutting down: answer now.
      const decision = policy.decisionFor(reason)
      if (decision !== undefined) sendRejection(ctx, decision)
      return undefined
    }
    return next().then(
      // Koa writes a buffered body as soon as the chain settles, in this turn; a streamed body, or a response the
      // app writes itself (`ctx.respond = false`), is timed until it closes.
      () => handlerSettled(context, ctx.respond !== false && !isStreamedBody(ctx.body)),
      (error: unknown) => {
        handlerSettled(context, false)
        return onFailure(error, ctx, context, policy)
      },
    )
  }
  return Object.assign(timeoutMiddleware, { policy })
}

/**
 * A failure of the chain, through core's errorResponse as `errorHandler()` does: answered at the deadline or the
 * client left (the handler's own abort) is silenced — Koa would log its stack otherwise —, a DeadlineExceededError
 * becomes 504 problem+json, anything else goes on up the chain.
 */
function onFailure(error: unknown, ctx: Context, context: RequestContext, policy: Timeout): void {
  const answer = errorResponse(error, context, ctx.res.headersSent, policy, false)
  if (answer === 'answered') return
  if (answer === undefined || ctx.headerSent) throw error
  sendRejection(ctx, answer)
}
