// Fastify plugin for the core health probes (GET and HEAD routes exempt from Breakwater's own policies) and
// graceful shutdown through `app.close()`.

import {
  createGracefulShutdown,
  createHealth,
  type GracefulShutdown,
  type GracefulShutdownOptions,
  type Health,
  type HealthOptions,
  type ProbeKind,
} from '@breakwater/core'
import type { FastifyContextConfig, FastifyInstance, FastifyPluginCallback, RouteHandlerMethod } from 'fastify'
import fp from 'fastify-plugin'
import { policyOptions } from './register-options.js'
import { setHeader } from './reply.js'
import { requestView } from './request-view.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The health probes of `@breakwater/fastify` (`markStarted()`, `report()`). */
    health: Health
  }
}

/**
 * Probe routes opt out of every Breakwater policy by its route-config name: a probe must never be rate-limited,
 * shed or timed out. (A cast, not a literal: `loadShedding` is declared by another plugin, which may be absent.)
 */
const EXEMPT = { rateLimit: false, timeout: false, loadShedding: false } as FastifyContextConfig

const plugin: FastifyPluginCallback<HealthOptions> = (fastify, options, done) => {
  const probes = createHealth(policyOptions(options))
  fastify.decorate('health', probes)
  for (const route of probes.routes) {
    fastify.route({ method: ['GET', 'HEAD'], url: route.path, config: EXEMPT, handler: handlerFor(probes, route.kind) })
  }
  fastify.addHook('onClose', (_instance, next) => {
    probes.close()
    next()
  })
  done()
}

function handlerFor(probes: Health, kind: ProbeKind): RouteHandlerMethod {
  return async function breakwaterHealthProbe(request, reply) {
    const answer = await probes.answer(kind, requestView(request, reply))
    reply.code(answer.statusCode)
    for (const [name, value] of answer.headers) setHeader(reply, name, value)
    return answer.payload
  }
}

/**
 * Fastify plugin: `GET`/`HEAD` `/livez`, `/readyz`, `/startupz` (paths configurable), answering
 * `application/health+json` with `Cache-Control: no-store`, 200 for pass/warn and 503 for fail. The routes carry
 * `config: { rateLimit: false, timeout: false, loadShedding: false }`, so Breakwater's plugins never limit, shed
 * or time out a probe. The probes are `app.health` (`markStarted()`). Options are checked at registration.
 *
 * @example
 * await app.register(health, { checks: [redisCheck(redis)], overload: shedder, authorize: isOps })
 * await app.listen({ port: 3000 })
 * app.health.markStarted()
 * gracefulShutdown(app, { hooks: [() => redis.quit()] })
 */
export const health = fp(plugin, { fastify: '5.x', name: '@breakwater/fastify-health' })

/**
 * Graceful shutdown through `app.close()`: on SIGTERM/SIGINT readiness fails at once; after `drainDelayMs` (5 s)
 * `app.close()` stops accepting (Fastify answers requests on kept-alive connections 503 meanwhile, and closes idle
 * ones); in-flight requests finish up to `timeoutMs` (20 s from the signal), when their
 * `request.breakwater.signal` aborts and, a second later, their connections are destroyed; then the hooks run and
 * the process exits 0 (1 if the timeout hit or a hook failed). `signals: false` and `trigger()` to start it
 * yourself. `onClose` hooks run as part of `app.close()`, before the hooks given here.
 *
 * @example
 * await app.listen({ port: 3000 })
 * gracefulShutdown(app, { drainDelayMs: '5s', timeoutMs: '20s', hooks: [{ name: 'redis', run: () => redis.quit() }] })
 */
export function gracefulShutdown(app: FastifyInstance, options: GracefulShutdownOptions = {}): GracefulShutdown {
  return createGracefulShutdown(
    {
      close: () => app.close(),
      closeIdleConnections: () => app.server.closeIdleConnections(),
      closeAllConnections: () => app.server.closeAllConnections(),
    },
    options,
  )
}
