// Fastify plugin for the core load shedder: one shedder per app, run as the first route-level `onRequest` hook
// (before body parsing); routes opt out with `config.loadShedding: false` or set their priority there.

import {
  createLoadShedder,
  type Decision,
  isPromiseLike,
  type LoadShedder,
  type LoadSheddingOptions,
  type Priority,
} from '@breakwater/core'
import type { FastifyPluginCallback, FastifyReply, HookHandlerDoneFunction, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { policyOptions } from './register-options.js'
import { sendRejection } from './reply.js'
import { requestView } from './request-view.js'

/** What a route's `config.loadShedding` accepts: `false` (never shed: health probes), or its priority. */
export type RouteLoadSheddingConfig = false | { priority?: Priority }

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: this route is never shed (health probes). `{ priority }`: its requests' priority. */
    loadShedding?: RouteLoadSheddingConfig
  }
  interface FastifyInstance {
    /** The load shedder of `@breakwater/fastify` (limit, inflight, `overloadState()` for readiness). */
    loadShedding: LoadShedder
  }
}

const plugin: FastifyPluginCallback<LoadSheddingOptions> = (fastify, options, done) => {
  const shedder = createLoadShedder(policyOptions(options))
  fastify.decorate('loadShedding', shedder)
  fastify.addHook('onClose', (_instance, closed) => {
    shedder.close()
    closed()
  })
  const hooks = new Map<Priority | undefined, onRequestHookHandler>()
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.loadShedding
    if (config === false) return
    const priority = config?.priority
    let hook = hooks.get(priority)
    if (hook === undefined) {
      hook = hookFor(shedder, priority)
      hooks.set(priority, hook)
    }
    // First: a shed request should cost as little as possible, before auth, rate limits or body parsing.
    const existing = route.onRequest
    route.onRequest = [hook, ...(existing === undefined ? [] : [existing].flat())]
  })
  done()
}

function hookFor(shedder: LoadShedder, priority: Priority | undefined): onRequestHookHandler {
  return function breakwaterLoadShedding(request, reply, done) {
    let decision: Decision | Promise<Decision>
    try {
      decision = shedder.admit(reply.raw, shedder.wantsRequest ? requestView(request, reply) : undefined, priority)
    } catch (error) {
      return done(error as Error) // the user's `priority` or `exclude` function threw: the error handler answers
    }
    if (isPromiseLike(decision)) decision.then((settled) => apply(settled, reply, done), done)
    else apply(decision, reply, done)
  }
}

function apply(decision: Decision, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  // A queued request may have outlived its client, or been answered by another hook (a timeout).
  if (reply.sent || reply.raw.destroyed) return
  if (decision.action === 'reject') sendRejection(reply, decision)
  else done()
}

/**
 * Fastify plugin: sheds load on every route except those with `config: { loadShedding: false }` (and paths in
 * `exclude`). Options are checked at registration (`BW_INVALID_OPTION`). Over the concurrency limit (adaptive
 * Gradient2 by default) the client gets 503 problem+json (`BW_OVERLOADED`) with a jittered `Retry-After`, from
 * `onRequest`, before the body is read. `fastify.loadShedding` is the shedder.
 *
 * @example
 * await app.register(loadShedding, { queue: true, pressure: { maxEventLoopDelayMs: 200 } })
 * app.get('/readyz', { config: { loadShedding: false } }, readiness)
 * app.get('/admin/report', { config: { loadShedding: { priority: 'critical' } } }, report)
 * // readiness: app.loadShedding.overloadState().overloaded
 */
export const loadShedding = fp(plugin, { fastify: '5.x', name: '@breakwater/fastify-load-shedding' })
