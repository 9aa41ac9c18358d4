// One health app per framework: the probes mounted in each framework's idiom, guarded by an app-wide rate limit
// and timeout (so a test can prove probes escape both), plus one ordinary route, over a real socket.

import type { Server } from 'node:http'
import type { Health, HealthOptions } from '@breakwater/core'
import { health as expressHealth, rateLimit as expressRateLimit, timeout as expressTimeout } from '@breakwater/express'
import { health as fastifyHealth, rateLimit as fastifyRateLimit, timeout as fastifyTimeout } from '@breakwater/fastify'
import { health as koaHealth, rateLimit as koaRateLimit, timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'

/** The app-wide policies every non-probe route gets: a tight limit and a short timeout. */
export const GUARD_LIMIT = 3
export const GUARD_TIMEOUT_MS = 60

export interface HealthApp {
  readonly url: string
  readonly health: Health
  /** Fastify only: the `config` each probe route was registered with, by `METHOD url`. */
  readonly routeConfigs: Map<string, unknown>
  close(): Promise<void>
}

export async function startHealthApp(framework: Framework, options: HealthOptions): Promise<HealthApp> {
  return builders[framework](options)
}

const builders: Record<Framework, (options: HealthOptions) => Promise<HealthApp>> = {
  async express(options) {
    const app = express()
    const probes = expressHealth(options)
    app.use(probes) // first: probes never reach the policies below
    app.use(expressTimeout({ timeoutMs: GUARD_TIMEOUT_MS }))
    app.use(expressRateLimit({ limit: GUARD_LIMIT, windowMs: '1m' }))
    app.get('/api/hello', (_req, res) => {
      res.json({ hello: true })
    })
    return serve(app.listen({ host: '127.0.0.1', port: 0 }), probes.health)
  },

  async fastify(options) {
    const app = Fastify()
    const routeConfigs = new Map<string, unknown>()
    app.addHook('onRoute', (route) => {
      routeConfigs.set(`${[route.method].flat().join(',')} ${route.url}`, route.config)
    })
    await app.register(fastifyTimeout, { timeoutMs: GUARD_TIMEOUT_MS })
    await app.register(fastifyRateLimit, { limit: GUARD_LIMIT, windowMs: '1m' })
    await app.register(fastifyHealth, options)
    app.get('/api/hello', async () => ({ hello: true }))
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
    return { url: `http://127.0.0.1:${address.port}`, health: app.health, routeConfigs, close: () => app.close() }
  },

  async koa(options) {
    const app = new Koa()
    const probes = koaHealth(options)
    app.use(probes) // first: probes never reach the policies below
    app.use(koaTimeout({ timeoutMs: GUARD_TIMEOUT_MS }))
    app.use(koaRateLimit({ limit: GUARD_LIMIT, windowMs: '1m' }))
    const router = new Router()
    router.get('/api/hello', (ctx) => {
      ctx.body = { hello: true }
    })
    app.use(router.routes())
    return serve(app.listen({ host: '127.0.0.1', port: 0 }), probes.health)
  },
}

async function serve(server: Server, health: Health): Promise<HealthApp> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return {
    url: `http://127.0.0.1:${address.port}`,
    health,
    routeConfigs: new Map(),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}
