// Fastify plugin for the core timeout policy: one policy per route config, created once in `onRoute`; the
// deadline is armed in the route's first `onRequest` hook and the lifecycle exposed as `request.breakwater`.

import {
  createTimeout,
  isPromiseLike,
  type RequestContext,
  type RequestLifecycle,
  type Timeout,
  type TimeoutOptions,
} from '@breakwater/core'
import {
  type ExpiryHandler,
  errorResponse,
  guardLateWrites,
  handedOn,
  handlerSettled,
  handlerStarted,
  prepareRejection,
  reportLateWrite,
} from '@breakwater/core/adapter'
import type {
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  RouteHandlerMethod,
} from 'fastify'
import fp from 'fastify-plugin'
import { policyOptions } from './register-options.js'
import { sendRejection } from './reply.js'
import { requestView } from './request-view.js'

/** Plugin options: the default timeout of every route, plus `global`. */
export interface FastifyTimeoutOptions extends TimeoutOptions {
  /** Time every route (`true`, default), or only routes with `config.timeout` (`false`). */
  global?: boolean
}

/** What a route's `config.timeout` accepts: its own options (merged over the plugin's), or `false` for none. */
export type RouteTimeoutConfig = TimeoutOptions | false

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Per-route timeout: options merged over the plugin's (e.g. `{ timeoutMs: 200 }`), or `false` for none. */
    timeout?: RouteTimeoutConfig
  }
  interface FastifyRequest {
    /**
     * The request's lifecycle: `signal` (aborted at the deadline, on client disconnect or shutdown), `deadline`,
     * `remainingMs()`, `timeoutSignal(ms)`, `requireBudget(ms)`, `forwardHeaders()`. Typed as always there, as a
     * decorator is: it is `null` only on a route registered with `config: { timeout: false }`, or with the
     * plugin's `global: false` and no `config.timeout`. (Prefer it to `request.signal`, which also aborts once a
     * request body has been read.)
     */
    breakwater: RequestLifecycle
  }
}

/** At the deadline (or shutdown): the problem if nothing was sent yet, else cut the started response. */
const onExpire: ExpiryHandler<FastifyReply> = (decision, reply) => {
  const raw = reply.raw
  if (reply.sent || raw.headersSent) {
    raw.destroy() // already streaming: end it rather than leave the client hanging on a half response
    return
  }
  // Drops the handler's headers (ETag, Location) from Fastify's own store and the raw response; closes a
  // half-read body.
  prepareRejection(raw, reply)
  sendRejection(reply, decision)
  // onSend hooks may delay the write: guard raw writes only once the 503 is out.
  if (raw.writableEnded) guardLateWrites(raw)
  else raw.once('finish', () => guardLateWrites(raw))
}

const plugin: FastifyPluginCallback<FastifyTimeoutOptions> = (fastify, options, done) => {
  const { global = true, ...base } = policyOptions(options)
  const globalPolicy = createTimeout(base) // checked at registration even when not global
  const globalHooks = global ? hooksFor(globalPolicy) : undefined
  // Declared up front so every request object keeps one shape; `null` until a route's hook arms a context.
  fastify.decorateRequest('breakwater', null as unknown as RequestLifecycle)

  const routes = new Map<RouteTimeoutConfig, Hooks>()
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.timeout
    if (config === false || (config === undefined && globalHooks === undefined)) return
    let hooks = globalHooks as Hooks
    if (config !== undefined) {
      hooks = routes.get(config) ?? hooksFor(createTimeout({ ...base, ...config }))
      routes.set(config, hooks)
    }
    // First: the deadline counts from the start of the request, before other hooks (rate limits, auth) spend it.
    const existing = route.onRequest
    route.onRequest = [hooks.onRequest, ...(existing === undefined ? [] : [existing].flat())]
    route.handler = hooks.wrap(route.handler)
  })
  done()
}

interface Hooks {
  onRequest: onRequestHookHandler
  wrap(handler: RouteHandlerMethod): RouteHandlerMethod
}

function hooksFor(policy: Timeout): Hooks {
  return {
    onRequest: function breakwaterTimeout(request, reply, done) {
      // The handler wrapper below reports when the handler is done, so a request that finishes in time never
      // puts a listener on its response.
      const view = policy.wantsRequest ? requestView(request, reply) : undefined
      const context = policy.start(reply.raw, view, onExpire, reply, undefined, true)
      request.breakwater = context
      const reason = context.abortReason
      if (reason !== undefined) {
        // Over budget before the handler ran (a trusted caller sent 0 ms), or shutting down: answer now.
        const decision = policy.decisionFor(reason)
        if (decision !== undefined && !reply.sent) sendRejection(reply, decision)
        return
      }
      done()
      // Usually the handler has run by now. If not, a later hook answered (it never will), or the rest went
      // asynchronous (body parsing, async hooks) and might fail before it: no longer counting on the handler.
      handedOn(context, reply.raw.writableEnded)
    },
    // The handler's failure is translated here (through core's errorResponse, as errorHandler() does) so that it
    // works without that handler and the user's own setErrorHandler stays theirs: a DeadlineExceededError
    // becomes 504 problem+json, and a handler rejecting with its own abort after the 503 went out or the client
    // left is silenced instead of reaching Fastify's "reply already sent" path or the error log.
    wrap(handler) {
      return function breakwaterTimeoutHandler(this: unknown, request: FastifyRequest, reply: FastifyReply) {
        const context = contextOf(request)
        if (context !== null) handlerStarted(context)
        const result = (handler as (this: unknown, request: FastifyRequest, reply: FastifyReply) => unknown).call(
          this,
          request,
          reply,
        )
        if (isPromiseLike(result)) return new GuardedResult(result, request, reply, policy)
        settle(request, reply) // a callback-style handler: Fastify sends what it returned after this
        return result
      } as RouteHandlerMethod
    },
  }
}

/**
 * The context this plugin armed on `request`, or `null` on a route without a timeout. `request.breakwater` is
 * typed as the `RequestLifecycle` interface for declaration merging; what this plugin stores there is always a
 * `RequestContext`.
 */
export function contextOf(request: FastifyRequest): RequestContext | null {
  return request.breakwater as unknown as RequestContext | null
}

/** The handler is done: the lifecycle ends now if the response is written, else when it closes. */
function settle(request: FastifyRequest, reply: FastifyReply): void {
  const context = contextOf(request)
  if (context !== null) handlerSettled(context, reply.raw.writableEnded)
}

const identity = (value: unknown): unknown => value
const rethrow = (error: unknown): never => {
  throw error
}

/**
 * What an async handler's promise becomes: a thenable Fastify unwraps exactly like the promise (it only calls
 * `then`), whose callbacks look at the outcome first. Handing Fastify the handler's own promise plus these checks,
 * instead of a second promise chained to it, saves every request a promise and a microtask.
 */
class GuardedResult {
  readonly #result: PromiseLike<unknown>
  readonly #request: FastifyRequest
  readonly #reply: FastifyReply
  readonly #policy: Timeout

  constructor(result: PromiseLike<unknown>, request: FastifyRequest, reply: FastifyReply, policy: Timeout) {
    this.#result = result
    this.#request = request
    this.#reply = reply
    this.#policy = policy
  }

  // biome-ignore lint/suspicious/noThenProperty: a thenable on purpose, for Fastify to unwrap
  then<R1 = unknown, R2 = never>(
    onFulfilled?: ((value: unknown) => R1) | null,
    onRejected?: ((error: unknown) => R2) | null,
  ): PromiseLike<R1 | R2> {
    const onValue = onFulfilled ?? (identity as (value: unknown) => R1)
    const onError = onRejected ?? (rethrow as (error: unknown) => R2)
    const request = this.#request
    const reply = this.#reply
    const policy = this.#policy
    return this.#result.then(
      (value) => {
        const context = contextOf(request)
        if (!reply.sent || context === null || context.abortReason === undefined) {
          const out = onValue(value) // Fastify sends the payload, usually to the end, before this returns
          settle(request, reply)
          return out
        }
        if (value !== undefined) reportLateWrite(context, 'send') // the handler answered after the 503
        return onValue(undefined) // "nothing more to send", as a handler that used reply.send() itself
      },
      (error: unknown) => {
        // Answered at the deadline, or the client left: "nothing more to send" (Fastify sends nothing then).
        const answer = errorResponse(error, contextOf(request) ?? undefined, reply.sent, policy, false)
        if (answer === 'answered') return onValue(undefined)
        try {
          if (answer === undefined || reply.sent) return onError(error)
          sendRejection(reply, answer)
          return onValue(undefined)
        } finally {
          settle(request, reply)
        }
      },
    )
  }

  // For code that wraps the handler after this plugin and treats its result as a Promise.
  catch<R>(onError: (error: unknown) => R): Promise<unknown> {
    return Promise.resolve(this).catch(onError)
  }

  finally(onFinally: () => void): Promise<unknown> {
    return Promise.resolve(this).finally(onFinally)
  }
}

/**
 * Fastify plugin: a deadline for every route (or, with `global: false`, the routes with `config.timeout`).
 * Options are the defaults of every route's policy, checked at registration (`BW_INVALID_OPTION`); routes
 * override them with `config: { timeout: { timeoutMs: 200 } }` or opt out with `config: { timeout: false }`.
 * At the deadline `request.breakwater.signal` aborts and the client gets 503 problem+json (`BW_TIMEOUT`); a
 * handler failing with `DeadlineExceededError` gets 504 (`BW_DEADLINE_EXCEEDED`).
 *
 * @example
 * await app.register(timeout, { timeoutMs: '5s' })
 * app.get('/report', { config: { timeout: { timeoutMs: '30s' } } }, async (request) => {
 *   return db.query(sql, { signal: request.breakwater.signal })
 * })
 */
export const timeout = fp(plugin, { fastify: '5.x', name: '@breakwater/fastify-timeout' })
