// One app per framework whose handlers call dependencies through core's outbound policies and let their errors
// escape, so one body of scenarios proves the frameworks' error paths answer them alike.

import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Dependency, dependency, type RequestContext } from '@breakwater/core'
import { timeout as expressTimeout, timeoutErrorHandler } from '@breakwater/express'
import { timeout as fastifyTimeout } from '@breakwater/fastify'
import { timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import express, { type ErrorRequestHandler } from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'

export interface OutboundApp {
  readonly url: string
  /** Errors that reached the app's own error handler (not answered by Breakwater). */
  readonly errors: unknown[]
  close(): Promise<void>
}

const never = (): Promise<never> => new Promise(() => {})

/** The routes' work, framework-free: each lets the dependency's error escape. */
function routes(): Record<string, (context: RequestContext) => Promise<unknown>> {
  const isolated = dependency('isolated')
  isolated.breaker?.isolate()
  const narrow: Dependency = dependency('narrow', { bulkhead: { limit: 1, retryAfterSeconds: 2 } })
  const slow = dependency('slow', { attemptTimeoutMs: 20 })
  return {
    '/api/circuit': (context) => isolated.execute(() => 'unreachable', { context }),
    '/api/bulkhead': async (context) => {
      const holding = narrow.execute(() => sleep(30), { context })
      try {
        return await narrow.execute(() => 'unreachable', { context })
      } finally {
        await holding
      }
    },
    '/api/attempt-timeout': (context) => slow.execute(never, { context }),
    '/api/no-budget': (context) => slow.execute(() => 'unreachable', { deadline: context.deadline - 60_000 }),
    '/api/plain': async () => {
      // A 5xx of the app's own: errorHandler answers 4xx client errors (body parsers'), never these.
      throw Object.assign(new Error('not ours'), { status: 502, statusCode: 502 })
    },
  }
}

export async function startOutboundApp(framework: Framework): Promise<OutboundApp> {
  const errors: unknown[] = []
  const started = await builders[framework](routes(), errors)
  return { ...started, errors }
}

type Routes = ReturnType<typeof routes>
type Started = Omit<OutboundApp, 'errors'>

const builders: Record<Framework, (routes: Routes, errors: unknown[]) => Promise<Started>> = {
  async express(routes, errors) {
    const app = express()
    app.use(expressTimeout({ timeoutMs: 5_000 }))
    for (const [path, work] of Object.entries(routes)) {
      app.get(path, async (req, res) => {
        res.json(await work(req.breakwater as RequestContext))
      })
    }
    app.use(timeoutErrorHandler())
    const onError: ErrorRequestHandler = (error, _req, res, _next) => {
      errors.push(error)
      res.status(error.status ?? 500).json({ error: String(error.message) })
    }
    app.use(onError)
    return serve(app.listen({ host: '127.0.0.1', port: 0 }))
  },

  async fastify(routes, errors) {
    const app = Fastify()
    app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
      errors.push(error)
      reply.code(error.statusCode ?? 500).send({ error: error.message })
    })
    await app.register(fastifyTimeout, { timeoutMs: 5_000 })
    for (const [path, work] of Object.entries(routes)) {
      app.get(path, async (request) => work(request.breakwater as RequestContext))
    }
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { url: `http://127.0.0.1:${portOf(app.server)}`, close: () => app.close() }
  },

  async koa(routes, errors) {
    const app = new Koa()
    app.on('error', (error: Error) => errors.push(error))
    app.use(koaTimeout({ timeoutMs: 5_000 }))
    const router = new Router()
    for (const [path, work] of Object.entries(routes)) {
      router.get(path, async (ctx) => {
        ctx.body = await work(ctx.breakwater as RequestContext)
      })
    }
    app.use(router.routes())
    return serve(app.listen({ host: '127.0.0.1', port: 0 }))
  },
}

async function serve(server: Server): Promise<Started> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  return {
    url: `http://127.0.0.1:${portOf(server)}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

function portOf(server: Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP')
  return address.port
}
