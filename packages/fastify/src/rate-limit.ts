// Fastify plugin for the core rate limiter: one limiter per route config, created once in `onRoute`, run as a
// route-level `onRequest` hook (before body parsing). Synchronous stores answer without a microtask hop.

import {
  createRateLimiter,
  type Decision,
  hashKey,
  isPromiseLike,
  type MaybePromise,
  type RateLimiter,
  type RateLimitOptions,
} from '@breakwater/core'
import type { FastifyPluginAsync, FastifyReply, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { policyOptions } from './register-options.js'
import { appendHeaders, sendRejection } from './reply.js'
import { type FastifyRequestView, requestView } from './request-view.js'

/** Plugin options: the default limits of every route, plus `global`. */
export interface FastifyRateLimitOptions extends RateLimitOptions {
  /** Limit every route (`true`, default), or only routes with `config.rateLimit` (`false`). */
  global?: boolean
}

/** What a route's `config.rateLimit` accepts: its own limiter(s) (merged over the plugin's options), or `false`. */
export type RouteRateLimitConfig = RateLimitOptions | readonly RateLimitOptions[] | false

/** `fastify.rateLimit`: the limiters this plugin created. */
export interface FastifyRateLimit {
  /** The limiter of every route without `config.rateLimit`; `undefined` with `global: false`. */
  readonly global: RateLimiter | undefined
  /** The limiters of a route with `config.rateLimit`, by method and route pattern (`'GET', '/orders/:id'`). */
  route(method: string, url: string): readonly RateLimiter[]
  /** Forget `key` in every limiter of this plugin (e.g. after a CAPTCHA). */
  reset(key: string): Promise<void>
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Per-route rate limit: options merged over the plugin's, an array of them, or `false` for none. */
    rateLimit?: RouteRateLimitConfig
  }
  interface FastifyInstance {
    /** The rate limiters of `@breakwater/fastify` (`reset`, `peek`, …). */
    rateLimit: FastifyRateLimit
  }
}

const LIMIT_FIELDS = ['limit', 'windowMs', 'name', 'algorithm', 'burst'] as const

const plugin: FastifyPluginAsync<FastifyRateLimitOptions> = async (fastify, options) => {
  const { global = true, ...base } = policyOptions(options)
  const globalLimiter = global ? createRateLimiter(base) : undefined
  const globalHook = globalLimiter ? hookFor(globalLimiter) : undefined
  const all = new Set<RateLimiter>(globalLimiter ? [globalLimiter] : [])
  const routes = new Map<
    string,
    { config: RouteRateLimitConfig; limiters: RateLimiter[]; hooks: onRequestHookHandler[] }
  >()

  fastify.decorate('rateLimit', {
    global: globalLimiter,
    route: (method: string, url: string) => routes.get(`${method.toUpperCase()} ${url}`)?.limiters ?? [],
    async reset(key: string) {
      await Promise.all([...all].map((limiter) => limiter.reset(key)))
    },
  } satisfies FastifyRateLimit)

  fastify.addHook('onRoute', (route) => {
    const config = route.config?.rateLimit
    if (config === false || (config === undefined && globalHook === undefined)) return
    let hooks: readonly onRequestHookHandler[]
    if (config === undefined) hooks = [globalHook as onRequestHookHandler]
    else {
      // A HEAD route Fastify derives from a GET shares the GET route's limiters (and counts).
      const method = [route.method]
        .flat()
        .map((m) => (m === 'HEAD' ? 'GET' : m))
        .join(',')
      const key = `${method} ${route.url}`
      let entry = routes.get(key)
      if (entry?.config !== config) {
        const list: readonly RateLimitOptions[] = Array.isArray(config) ? config : [config]
        const limiters = list.map((own, i) => createRateLimiter(merge(base, own, key, i)))
        for (const limiter of limiters) all.add(limiter)
        entry = { config, limiters, hooks: limiters.map(hookFor) }
        routes.set(key, entry)
      }
      hooks = entry.hooks
    }
    // After the route's own onRequest hooks (often authentication, which a `key` function may rely on).
    const existing = route.onRequest
    route.onRequest = [...(existing === undefined ? [] : [existing].flat()), ...hooks]
  })
}

/** A route's options over the plugin's; a route that sets its own limits drops the plugin's limits. */
function merge(base: RateLimitOptions, own: RateLimitOptions, route: string, index: number): RateLimitOptions {
  const merged: RateLimitOptions = { ...base, ...own }
  if (own.rules !== undefined) for (const field of LIMIT_FIELDS) delete merged[field]
  else if (LIMIT_FIELDS.some((field) => own[field] !== undefined)) delete merged.rules
  if (own.id === undefined) {
    const id = `${base.id ?? 'rate-limit'}:${route}${index === 0 ? '' : `#${index}`}`
    merged.id = id.length <= 64 ? id : `${base.id ?? 'rate-limit'}:${hashKey(id, 22)}`.slice(-64)
  }
  return merged
}

function hookFor(limiter: RateLimiter): onRequestHookHandler {
  return function breakwaterRateLimit(request, reply, done) {
    let decision: MaybePromise<Decision>
    const view = requestView(request, reply)
    try {
      decision = limiter.check(view, reply.raw)
    } catch (error) {
      return done(error as Error) // a user's `key`, `cost` or `skip` function threw: the error handler answers
    }
    if (isPromiseLike(decision)) decision.then((settled) => apply(settled, reply, view, done)).catch(done)
    else apply(decision, reply, view, done)
  }
}

function apply(decision: Decision, reply: FastifyReply, view: FastifyRequestView, done: HookHandlerDoneFunction) {
  // Another hook (a timeout, say) may have answered while a remote store was deciding.
  if (reply.sent) return
  if (decision.action === 'reject') sendRejection(reply, decision)
  else {
    if (decision.headers !== undefined) {
      appendHeaders(reply, decision.headers, !view.rateLimitHeaders)
      view.rateLimitHeaders = true
    }
    done()
  }
}

/**
 * Fastify plugin: rate limits every route (or, with `global: false`, the routes with `config.rateLimit`).
 * Options are the defaults of every route's limiter; they are checked at registration (`BW_INVALID_OPTION`).
 * Routes override them with `config: { rateLimit: { … } }` or opt out with `config: { rateLimit: false }`.
 * Limiting runs in `onRequest`, before the body is read. The client is `request.ip`, so Fastify's
 * `trustProxy` decides which address that is.
 *
 * @example
 * await app.register(rateLimit, { limit: 100, windowMs: '1m' })
 * app.post('/login', { config: { rateLimit: { limit: 5, windowMs: '15m' } } }, login)
 * app.get('/health', { config: { rateLimit: false } }, () => 'ok')
 * await app.rateLimit.reset(request.ip)
 */
export const rateLimit = fp(plugin, { fastify: '5.x', name: '@breakwater/fastify-rate-limit' })
