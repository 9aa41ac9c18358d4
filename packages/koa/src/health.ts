// Koa middleware for the core health probes (GET and HEAD on each probe path) and graceful shutdown of the
// http.Server that `app.listen()` returns.

import type { Server } from 'node:http'
import {
  createGracefulShutdown,
  createHealth,
  type GracefulShutdown,
  type GracefulShutdownOptions,
  type Health,
  type HealthOptions,
  type ProbeKind,
} from '@breakwater/core'
import type { Context, Middleware, Next } from 'koa'
import { requestView } from './request-view.js'

/** The middleware returned by {@link health}, with its probes (`markStarted()`, `report()`). */
export type HealthMiddleware = Middleware & { readonly health: Health }

/**
 * Health probes: answers `GET`/`HEAD` `/livez`, `/readyz`, `/startupz` (paths configurable) with
 * `application/health+json` and `Cache-Control: no-store`, 200 for pass/warn and 503 for fail; other requests go
 * on to `next()`. `app.use()` it **first**: a probe is answered without calling `next()`, so rate limits, load
 * shedding and timeouts mounted after it never see, count, shed or time it out. Options are checked here.
 *
 * @example
 * const probes = health({ checks: [redisCheck(redis)], overload: shedder, authorize: isOps })
 * app.use(probes) // first
 * app.use(timeout({ timeoutMs: '10s' }))
 * const server = app.listen(3000, () => probes.health.markStarted())
 * gracefulShutdown(server, { hooks: [() => redis.quit()] })
 */
export function health(options: HealthOptions = {}): HealthMiddleware {
  const probes = createHealth(options)
  const byPath = new Map<string, ProbeKind>(probes.routes.map((route) => [route.path, route.kind]))
  function healthMiddleware(ctx: Context, next: Next): Promise<unknown> {
    const kind = byPath.get(ctx.path)
    if (kind === undefined || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next()
    return probes.answer(kind, requestView(ctx)).then((answer) => {
      ctx.status = answer.statusCode
      for (const [name, value] of answer.headers) ctx.set(name, value)
      ctx.body = answer.payload // Koa drops it for HEAD, keeping Content-Length
    })
  }
  return Object.assign(healthMiddleware, { health: probes })
}

/**
 * Graceful shutdown of the server `app.listen()` returned: on SIGTERM/SIGINT readiness fails at once; after
 * `drainDelayMs` (5 s) the listener closes and idle keep-alive connections are closed; in-flight requests finish
 * up to `timeoutMs` (20 s from the signal), when their `ctx.breakwater.signal` aborts; then the hooks run and the
 * process exits 0 (1 if the timeout hit or a hook failed). `signals: false` and `trigger()` to start it yourself.
 *
 * @example
 * const server = app.listen(3000)
 * gracefulShutdown(server, { drainDelayMs: '5s', timeoutMs: '20s', hooks: [{ name: 'redis', run: () => redis.quit() }] })
 */
export function gracefulShutdown(server: Server, options: GracefulShutdownOptions = {}): GracefulShutdown {
  return createGracefulShutdown(server, options)
}
