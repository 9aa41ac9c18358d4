// The RequestView of an Express request: lazy getters over `req`, one per request, shared by every policy.
// Nothing is copied; the request's lifecycle (and its AbortSignal) is created only when something asks for it.

import { type RequestView, requestContext } from '@breakwater/core'
import type { Request, Response } from 'express'

const VIEW = Symbol('breakwater.view')

/** @internal */
export class ExpressRequestView implements RequestView {
  /** @internal A rate limiter has set its headers on this response: the next one appends to them. */
  rateLimitHeaders = false
  readonly #req: Request
  readonly #res: Response

  constructor(req: Request, res: Response) {
    this.#req = req
    this.#res = res
  }

  get method(): string {
    return this.#req.method
  }

  /** The matched route's pattern (with its router's mount path) once routing has matched, else the URL path. */
  get path(): string {
    const req = this.#req
    const pattern: unknown = req.route?.path
    return req.baseUrl + (typeof pattern === 'string' ? pattern : req.path)
  }

  get ip(): string | undefined {
    return this.#req.ip || undefined
  }

  header(name: string): string | undefined {
    const value = this.#req.headers[name.toLowerCase()]
    return Array.isArray(value) ? value.join(', ') : value
  }

  /**
   * The request's one signal, from its lifecycle (`@breakwater/core` `requestContext`): aborted when the client
   * goes away (the response closes unfinished — not the request's `close`, which fires once a body has been
   * read), at the deadline of the timeout middleware, or on shutdown.
   */
  get signal(): AbortSignal {
    return requestContext(this.#res).signal
  }
}

/**
 * The {@link RequestView} of an Express request, created on first use and reused by every Breakwater policy
 * on the same request (so they share one AbortSignal).
 *
 * @example
 * app.use((req, res, next) => {
 *   const view = requestView(req, res)
 *   view.signal.addEventListener('abort', () => console.log('client went away from', view.path))
 *   next()
 * })
 */
export function requestView(req: Request, res: Response): ExpressRequestView {
  const holder = req as Request & { [VIEW]?: ExpressRequestView }
  let view = holder[VIEW]
  if (view === undefined) {
    view = new ExpressRequestView(req, res)
    holder[VIEW] = view
  }
  return view
}
