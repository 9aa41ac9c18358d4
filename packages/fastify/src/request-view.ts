// The RequestView of a Fastify request: lazy getters over `request`, one per request, shared by every policy.
// Nothing is copied; the request's lifecycle (and its AbortSignal) is created only when something asks for it.

import type { RequestView } from '@breakwater/core'
import { requestContext } from '@breakwater/core/adapter'
import type { FastifyReply, FastifyRequest } from 'fastify'

const VIEW = Symbol('breakwater.view')

/** @internal */
export class FastifyRequestView implements RequestView {
  readonly #request: FastifyRequest
  readonly #reply: FastifyReply
  #path: string | undefined
  /** @internal A rate limiter has set its headers on this reply: the next one appends to them. */
  rateLimitHeaders = false

  constructor(request: FastifyRequest, reply: FastifyReply) {
    this.#request = request
    this.#reply = reply
  }

  get method(): string {
    return this.#request.method
  }

  /** The route pattern (`/orders/:id`, prefix included), else the URL path. */
  get path(): string {
    if (this.#path === undefined) {
      const request = this.#request
      const url = request.url
      const query = url.indexOf('?')
      this.#path = request.routeOptions.url ?? (query === -1 ? url : url.slice(0, query))
    }
    return this.#path
  }

  get ip(): string | undefined {
    return this.#request.ip || undefined
  }

  header(name: string): string | undefined {
    const value = this.#request.headers[name.toLowerCase()]
    return Array.isArray(value) ? value.join(', ') : value
  }

  /**
   * The request's one signal, from its lifecycle (`@breakwater/core` `requestContext`): aborted when the client
   * goes away (the response closes unfinished — not the request's `close`, which fires once a body has been
   * read), at the deadline of the timeout middleware, or on shutdown.
   */
  get signal(): AbortSignal {
    return requestContext(this.#reply.raw).signal
  }
}

/**
 * The {@link RequestView} of a Fastify request, created on first use and reused by every Breakwater policy
 * on the same request (so they share one AbortSignal).
 *
 * @example
 * fastify.addHook('onRequest', async (request, reply) => {
 *   requestView(request, reply).signal.addEventListener('abort', () => request.log.info('client went away'))
 * })
 */
export function requestView(request: FastifyRequest, reply: FastifyReply): FastifyRequestView {
  const raw = request.raw as FastifyRequest['raw'] & { [VIEW]?: FastifyRequestView }
  let view = raw[VIEW]
  if (view === undefined) {
    view = new FastifyRequestView(request, reply)
    raw[VIEW] = view
  }
  return view
}
