// The response side of a request's lifecycle, for adapters and policies: the context of a response, created on
// first use and ended when the response closes (or when the adapter reports the handler done, without a listener).

import type { ServerResponse } from 'node:http'
import type { TimeoutDecisionEvent } from '../events.js'
import { onResponseClose, responseClosed } from '../internal/response.js'
import type { RequestView } from '../request-view.js'
import {
  type ContextHolder,
  type ContextPolicy,
  closeContext,
  contextInternals,
  type ExpiryHandler,
  RESPONSE_CONTEXT,
  RequestContext,
} from './request-context.js'

/**
 * The {@link RequestContext} of a response, created on first use and shared by everything on the same request
 * (the request view's `signal`, the timeout middleware, the handler). It watches the response: closing before
 * it finished means the client went away (the request's `close` is not used — it fires once the body has been
 * read); closing at all ends the lifecycle and clears its timers.
 *
 * `holder` is where the context is kept for later lookups, under a symbol: the response itself by default.
 * Pass another per-request object when adding a property to the response is costly — Express's `res.locals`,
 * a dictionary already: each property added to Express's `req` or `res` costs that request several µs. Every
 * call for one request must pass the same holder. With a holder other than `res`, the response's `close`
 * listener keeps its own reference to the context, so the lifecycle ends even if the holder is replaced.
 *
 * @example
 * // in an adapter's request view
 * get signal() { return requestContext(this.#res).signal }
 */
export function requestContext(res: ServerResponse, holder: object = res): RequestContext {
  return (holder as ContextHolder)[RESPONSE_CONTEXT] ?? createContext(res, holder, true)
}

function createContext(res: ServerResponse, holder: object, watch: boolean): RequestContext {
  const context = new RequestContext()
  ;(holder as ContextHolder)[RESPONSE_CONTEXT] = context
  if (!watch) {
    contextInternals.leaveUnwatched(context, res)
    return context
  }
  const onClose = holder === res ? onContextResponseClose : (): void => closeContext(res, context)
  if (responseClosed(res)) onClose.call(res)
  else onResponseClose(res, onClose)
  return context
}

/** The context of a response if one was created, without creating one (`holder` as for {@link requestContext}). */
export function existingRequestContext(res: ServerResponse, holder: object = res): RequestContext | undefined {
  return (holder as ContextHolder)[RESPONSE_CONTEXT]
}

// One shared listener for every response kept on itself: `this` is the response, so nothing is allocated.
function onContextResponseClose(this: ServerResponse): void {
  const context = (this as ContextHolder)[RESPONSE_CONTEXT]
  if (context !== undefined) closeContext(this, context)
}

/** @internal Give `context` a budget of `budgetMs` from its start under `policy`; false when already over it. */
export function armContext<T>(
  context: RequestContext,
  budgetMs: number,
  policy: ContextPolicy,
  request: RequestView | undefined,
  onExpire: ExpiryHandler<T> | undefined,
  target: T,
): boolean {
  return contextInternals.arm(context, budgetMs, policy, request, onExpire, target, false)
}

/**
 * @internal {@link requestContext} of `res` armed as {@link armContext} does, reading the clock once when the
 * context is created here (the common case: the timeout middleware is the first to ask for it). With `watch`
 * false a context created here does not listen to the response until it needs to: the adapter then reports the
 * end of the handler with {@link handlerSettled}. A request already over budget (or arriving during shutdown)
 * listens at once: it gets no handler.
 */
export function armResponseContext<T>(
  res: ServerResponse,
  holder: object,
  budgetMs: number,
  policy: ContextPolicy,
  request: RequestView | undefined,
  onExpire: ExpiryHandler<T>,
  target: T,
  watch: boolean,
): RequestContext {
  const existing = (holder as ContextHolder)[RESPONSE_CONTEXT]
  const context = existing ?? createContext(res, holder, watch)
  const inBudget = contextInternals.arm(context, budgetMs, policy, request, onExpire, target, existing === undefined)
  // Over budget on arrival (or shutting down): the adapter answers now and no handler will run to report its end,
  // so the lifecycle ends when the response closes.
  if (!inBudget) contextInternals.handlerSettled(context, false)
  return context
}

/**
 * For adapters that started a timeout with `settledByHandler` (see `Timeout.start`): the handler is done.
 * `responseDone` says whether the response has been written in full (or will be, synchronously, as Koa does once
 * its middleware chain settles); the lifecycle then ends here, without a listener on the response ever having
 * been attached. Otherwise (a stream still flowing, an asynchronous `onSend`) it ends when the response closes.
 * Does nothing for a context that already listens to its response.
 *
 * @example
 * return next().then(() => handlerSettled(context, !isStreamedBody(ctx.body)))
 */
export function handlerSettled(context: RequestContext, responseDone: boolean): void {
  contextInternals.handlerSettled(context, responseDone)
}

/**
 * For adapters whose handler wrapper reports the end of the handler (Fastify): the wrapper is running the
 * handler now. See {@link handedOn}.
 */
export function handlerStarted(context: RequestContext): void {
  contextInternals.handlerStarted(context)
}

/**
 * For adapters whose handler wrapper reports the end of the handler: the hook that started the timeout has handed
 * the request on and control is back. If no handler has started by now, it may never start (a later hook
 * answered, or the rest runs asynchronously and may fail before it): the lifecycle then ends here when
 * `responseDone`, else when the response closes, as {@link handlerSettled} does. Does nothing once the handler
 * has started; the handler reports its own end.
 *
 * @example
 * done()
 * handedOn(context, reply.raw.writableEnded)
 */
export function handedOn(context: RequestContext, responseDone: boolean): void {
  contextInternals.handedOn(context, responseDone)
}

/** @internal Report that the client went away (for hosts without a node:http response). */
export function reportClientGone(context: RequestContext): void {
  contextInternals.clientGone(context)
}

/** @internal Record an outcome decided outside the context (a 504 mapping); false if one was recorded already. */
export function settleContext(context: RequestContext, outcome: TimeoutDecisionEvent['outcome']): boolean {
  return contextInternals.settle(context, outcome)
}

/**
 * Report, once per request, that a handler answered after its request had been answered at the deadline
 * (published on `breakwater:timeout:late-write`). For adapters whose framework swallows such writes itself, e.g.
 * a Fastify handler resolving a payload after the 503; raw response writes are reported by `guardLateWrites`.
 *
 * @example
 * if (reply.sent && context.abortReason !== undefined) reportLateWrite(context, 'send')
 */
export function reportLateWrite(context: RequestContext, operation: string): void {
  contextInternals.lateWrite(context, operation)
}
