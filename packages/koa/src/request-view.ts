// The RequestView of a Koa context: lazy getters over `ctx`, one per request, shared by every policy.
// Nothing is copied; the request's lifecycle (and its AbortSignal) is created only when something asks for it.

import type { RequestView } from '@breakwater/core'
import { requestContext } from '@breakwater/core/adapter'
import type { Context } from 'koa'

const VIEW = Symbol('breakwater.view')

/** @internal */
export class KoaRequestView implements RequestView {
  /** @internal A rate limiter has set its headers on this response: the next one appends to them. */
  rateLimitHeaders = false
  readonly #ctx: Context

  constructor(ctx: Context) {
    this.#ctx = ctx
  }

  get method(): string {
    return this.#ctx.method
  }

  /** The pattern of the route @koa/router matched (`/orders/:id`, prefix included), else the URL path. */
  get path(): string {
    const pattern = (this.#ctx as { _matchedRoute?: unknown })._matchedRoute
    return typeof pattern === 'string' ? pattern : this.#ctx.path
  }

  get ip(): string | undefined {
    return this.#ctx.ip || undefined
  }

  header(name: string): string | undefined {
    const value = this.#ctx.req.headers[name.toLowerCase()]
    return Array.isArray(value) ? value.join(', ') : value
  }

  /**
   * The request's one signal, from its lifecycle (`@breakwater/core` `requestContext`): aborted when the client
   * goes away (the response closes unfinished — not the request's `close`, which fires once a body has been
   * read), at the deadline of the timeout middleware, or on shutdown.
   */
  get signal(): AbortSignal {
    return requestContext(this.#ctx.res).signal
  }
}

/**
 * The {@link RequestView} of a Koa context, created on first use and reused by every Breakwater policy on the
 * same request (so they share one AbortSignal).
 *
 * @example
 * app.use(async (ctx, next) => {
 *   requestView(ctx).signal.addEventListener('abort', () => console.log('client went away'))
 *   await next()
 * })
 */
export function requestView(ctx: Context): KoaRequestView {
  const holder = ctx as Context & { [VIEW]?: KoaRequestView }
  let view = holder[VIEW]
  if (view === undefined) {
    view = new KoaRequestView(ctx)
    holder[VIEW] = view
  }
  return view
}
