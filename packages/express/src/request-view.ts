// The RequestView of an Express request: lazy getters over `req`, one per request, shared by every policy.
// Nothing is copied; the request's lifecycle (and its AbortSignal) is created only when something asks for it.
// Per-request state lives in `res.locals` (see stateHolder), never in new properties of `req` or `res`.

import type { RequestView } from '@breakwater/core'
import { requestContext } from '@breakwater/core/adapter'
import type { Request, Response } from 'express'

const VIEW = Symbol('breakwater.view')

/**
 * Where Breakwater keeps its per-request state (under symbols): `res.locals`, the dictionary Express gives
 * every response, else `res` itself. Adding a property to Express's `req` or `res` is not free as it is on
 * Node's own objects: Express changes their prototype on every request, and each property added afterwards
 * cost several µs per request (≈ 5 % of a hello-world's throughput, measured). `res.locals` takes keys at the
 * cost of a dictionary insert. Lifecycles never depend on finding their state here again (each `close`
 * listener holds its own), so an app that replaces `res.locals` loses only lookups, never a permit or a timer.
 *
 * @internal
 */
export function stateHolder(res: Response): object {
  const locals: unknown = res.locals
  return typeof locals === 'object' && locals !== null ? locals : res
}

/** @internal */
export class ExpressRequestView implements RequestView {
  /**
   * @internal A rate limiter has set its headers on this response: the next one appends to them. (An app that
   * replaces `res.locals` between two limiters gets a new view, and the second limiter's fields replace the
   * first's instead of extending them.)
   */
  rateLimitHeaders = false
  readonly #req: Request
  readonly #res: Response
  /** @internal {@link stateHolder} of the response. */
  readonly holder: object

  constructor(req: Request, res: Response, holder: object) {
    this.#req = req
    this.#res = res
    this.holder = holder
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
    return requestContext(this.#res, this.holder).signal
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
  const holder = stateHolder(res)
  const slots = holder as { [VIEW]?: ExpressRequestView }
  let view = slots[VIEW]
  if (view === undefined) {
    view = new ExpressRequestView(req, res, holder)
    slots[VIEW] = view
  }
  return view
}
