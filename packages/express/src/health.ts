// Express routes for the core health probes (GET and HEAD on each probe path, in one Router) and graceful
// shutdown of the http.Server that `app.listen()` returns.

import type { Server } from 'node:http'
import {
  createGracefulShutdown,
  createHealth,
  type GracefulShutdown,
  type GracefulShutdownOptions,
  type Health,
  type HealthOptions,
  type ProbeAnswer,
  type ProbeKind,
} from '@breakwater/core'
import { type NextFunction, type Request, type RequestHandler, type Response, Router } from 'express'
import { requestView } from './request-view.js'

/** The Router returned by {@link health}, with its probes (`markStarted()`, `report()`). */
export type HealthRouter = Router & { readonly health: Health }

/**
 * Health probe routes: `GET`/`HEAD` `/livez`, `/readyz`, `/startupz` (paths configurable), answering
 * `application/health+json` with `Cache-Control: no-store`, 200 for pass/warn and 503 for fail. Mount it
 * **before** rate limits, load shedding and timeouts: a probe is answered here without calling `next()`, so
 * those never see, count, shed or time it out. Options are checked here (`BW_INVALID_OPTION`).
 *
 * @example
 * const probes = health({ checks: [redisCheck(redis)], overload: shedder, authorize: isOps })
 * app.use(probes) // first
 * app.use(timeout({ timeoutMs: '10s' }))
 * app.use(rateLimit({ limit: 100, windowMs: '1m' }))
 * const server = app.listen(3000, () => probes.health.markStarted())
 * gracefulShutdown(server, { hooks: [() => redis.quit()] })
 */
export function health(options: HealthOptions = {}): HealthRouter {
  const probes = createHealth(options)
  const router = Router()
  for (const route of probes.routes) router.get(route.path, probeHandler(probes, route.kind)) // HEAD included
  return Object.assign(router, { health: probes })
}

function probeHandler(probes: Health, kind: ProbeKind): RequestHandler {
  return function breakwaterHealthProbe(req: Request, res: Response, next: NextFunction): void {
    probes.answer(kind, requestView(req, res)).then((answer) => send(res, answer), next)
  }
}

function send(res: Response, answer: ProbeAnswer): void {
  res.statusCode = answer.statusCode
  for (const [name, value] of answer.headers) res.setHeader(name, value)
  // Node drops the body of a HEAD response itself; `res.send` would add an ETag a no-store answer has no use for.
  res.end(answer.payload)
}

/**
 * Graceful shutdown of the server `app.listen()` returned: on SIGTERM/SIGINT readiness fails at once; after
 * `drainDelayMs` (5 s) the listener closes and idle keep-alive connections are closed; in-flight requests finish
 * up to `timeoutMs` (20 s from the signal), when their `req.breakwater.signal` aborts; then the hooks run and the
 * process exits 0 (1 if the timeout hit or a hook failed). `signals: false` and `trigger()` to start it yourself.
 *
 * @example
 * const server = app.listen(3000)
 * gracefulShutdown(server, { drainDelayMs: '5s', timeoutMs: '20s', hooks: [{ name: 'redis', run: () => redis.quit() }] })
 */
export function gracefulShutdown(server: Server, options: GracefulShutdownOptions = {}): GracefulShutdown {
  return createGracefulShutdown(server, options)
}
