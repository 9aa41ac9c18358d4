// One app factory per framework: the same routes and rate limits, mounted in each framework's own idiom and
// served over a real socket, so one body of scenarios runs against all three adapters.

import type { Server, ServerResponse } from 'node:http'
import { type RateLimitMiddleware as ExpressMiddleware, rateLimit as expressRateLimit } from '@breakwater/express'
import { rateLimit as fastifyRateLimit, type RateLimitOptions } from '@breakwater/fastify'
import { type RateLimitMiddleware as KoaMiddleware, rateLimit as koaRateLimit } from '@breakwater/koa'
import Router from '@koa/router'
import express, { type ErrorRequestHandler } from 'express'
import Fastify from 'fastify'
import Koa from 'koa'

export const FRAMEWORKS = ['express', 'fastify', 'koa'] as const
export type Framework = (typeof FRAMEWORKS)[number]

/**
 * Every handler answers `?status=N` with that status (to tell successful from failed responses), and `?hold=1`
 * by never answering until the client goes away (an aborted response).
 */
export interface RouteSpec {
  /** Default `GET`. POST routes parse a JSON body (after the global limiter). */
  method?: 'GET' | 'POST'
  /** Route pattern, e.g. `/items/:id`. */
  path: string
  /** Limiters of this route only: Express/Koa mount them on the route, Fastify sets `config.rateLimit`. */
  limits?: RateLimitOptions[]
  /** Not covered by the global limiter: Fastify `config.rateLimit: false`; Express/Koa route it before the
   * global middleware. */
  exempt?: boolean
}

export interface AppSpec {
  /** Mounted for every route: `app.use(rateLimit(…))`, or Fastify's plugin options. */
  global?: RateLimitOptions
  routes: RouteSpec[]
  /** Express `trust proxy`, Fastify `trustProxy`, Koa `app.proxy`. */
  trustProxy?: boolean
  /** Listen on this Unix socket instead of 127.0.0.1:0: requests then have no client IP. */
  socketPath?: string
}

export interface TestApp {
  /** `http://127.0.0.1:<port>` (or `http://localhost` on a Unix socket). */
  readonly url: string
  /** How many times the handler of `METHOD /pattern` ran. */
  handled(route: string): number
  /** Errors that reached the framework's error path (Express error middleware, Fastify error handler, Koa 'error'). */
  readonly errors: Error[]
  /** Forget `key` in every limiter of the app. */
  reset(key: string): Promise<void>
  close(): Promise<void>
}

interface Counters {
  handled: Map<string, number>
  errors: Error[]
}

const count = (counters: Counters, method: string, path: string): void => {
  const route = `${method} ${path}`
  counters.handled.set(route, (counters.handled.get(route) ?? 0) + 1)
}

export async function startApp(framework: Framework, spec: AppSpec): Promise<TestApp> {
  const counters: Counters = { handled: new Map(), errors: [] }
  const started = await builders[framework](spec, counters)
  return {
    url: started.url,
    errors: counters.errors,
    handled: (route) => counters.handled.get(route) ?? 0,
    reset: started.reset,
    close: started.close,
  }
}

type Started = Pick<TestApp, 'url' | 'reset' | 'close'>

const builders: Record<Framework, (spec: AppSpec, counters: Counters) => Promise<Started>> = {
  async express(spec, counters) {
    const app = express()
    if (spec.trustProxy) app.set('trust proxy', true)
    const limiters: ExpressMiddleware[] = []
    const limit = (options: RateLimitOptions): ExpressMiddleware => {
      const middleware = expressRateLimit(options)
      limiters.push(middleware)
      return middleware
    }
    const mount = (route: RouteSpec): void => {
      const method = route.method ?? 'GET'
      const handler: express.RequestHandler = (req, res) => {
        count(counters, method, route.path)
        if (req.query.hold !== undefined) return
        res.status(statusOf(req.query.status)).json({ ok: true, route: route.path, body: req.body ?? null })
      }
      app[method === 'GET' ? 'get' : 'post'](route.path, ...(route.limits ?? []).map(limit), handler)
    }
    for (const route of spec.routes.filter((r) => r.exempt)) mount(route)
    if (spec.global) app.use(limit(spec.global))
    app.use(express.json())
    for (const route of spec.routes.filter((r) => !r.exempt)) mount(route)
    const onError: ErrorRequestHandler = (error, _req, res, _next) => {
      counters.errors.push(error)
      res.status(error.status ?? error.statusCode ?? 500).json({ error: String(error.message) })
    }
    app.use(onError)
    const server = app.listen(spec.socketPath ?? { host: '127.0.0.1', port: 0 })
    return serve(server, spec, limiters)
  },

  async fastify(spec, counters) {
    const app = Fastify({ trustProxy: spec.trustProxy === true })
    app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
      counters.errors.push(error)
      reply.code(error.statusCode ?? 500).send({ error: error.message })
    })
    await app.register(fastifyRateLimit, spec.global ?? { global: false })
    for (const route of spec.routes) {
      const method = route.method ?? 'GET'
      const limits = route.limits
      const rateLimit = route.exempt
        ? false
        : limits === undefined
          ? undefined
          : limits.length === 1
            ? limits[0]
            : limits
      app.route({
        method,
        url: route.path,
        config: rateLimit === undefined ? {} : { rateLimit },
        handler: async (request, reply) => {
          count(counters, method, route.path)
          const query = request.query as Record<string, string | undefined>
          if (query.hold !== undefined) await closed(reply.raw)
          reply.code(statusOf(query.status))
          return { ok: true, route: route.path, body: request.body ?? null }
        },
      })
    }
    await app.listen(spec.socketPath ? { path: spec.socketPath } : { host: '127.0.0.1', port: 0 })
    return {
      url: spec.socketPath ? 'http://localhost' : `http://127.0.0.1:${addressPort(app.server)}`,
      reset: (key) => app.rateLimit.reset(key),
      close: () => app.close(),
    }
  },

  async koa(spec, counters) {
    const app = new Koa()
    app.proxy = spec.trustProxy === true
    app.on('error', (error: Error) => counters.errors.push(error))
    const limiters: KoaMiddleware[] = []
    const limit = (options: RateLimitOptions): KoaMiddleware => {
      const middleware = koaRateLimit(options)
      limiters.push(middleware)
      return middleware
    }
    const routers = { exempt: new Router(), limited: new Router() }
    for (const route of spec.routes) {
      const method = route.method ?? 'GET'
      const router = route.exempt ? routers.exempt : routers.limited
      const handler = async (ctx: Koa.Context): Promise<void> => {
        const body = method === 'POST' ? await readJson(ctx) : null
        count(counters, method, route.path)
        if (ctx.query.hold !== undefined) await closed(ctx.res)
        ctx.status = statusOf(ctx.query.status)
        ctx.body = { ok: true, route: route.path, body }
      }
      router[method === 'GET' ? 'get' : 'post'](route.path, ...(route.limits ?? []).map(limit), handler)
    }
    app.use(routers.exempt.routes())
    if (spec.global) app.use(limit(spec.global))
    app.use(routers.limited.routes())
    const server = app.listen(spec.socketPath ?? { host: '127.0.0.1', port: 0 })
    return serve(server, spec, limiters)
  },
}

/** The status a handler answers with: `?status=N`, else 200. */
function statusOf(value: unknown): number {
  const status = Number(value)
  return Number.isInteger(status) && status >= 200 && status <= 599 ? status : 200
}

/** Resolves when the response closes (here: when the client went away from a held request). */
function closed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => res.once('close', () => resolve()))
}

/** Koa has no body parser built in: read and parse the JSON body like one would. */
async function readJson(ctx: Koa.Context): Promise<unknown> {
  const chunks: Buffer[] = []
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer)
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    ctx.throw(400, 'Invalid JSON body')
  }
}

async function serve(server: Server, spec: AppSpec, limiters: { limiter: { reset(key: string): Promise<void> } }[]) {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  return {
    url: spec.socketPath ? 'http://localhost' : `http://127.0.0.1:${addressPort(server)}`,
    reset: async (key: string) => {
      await Promise.all(limiters.map((m) => m.limiter.reset(key)))
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

function addressPort(server: Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP')
  return address.port
}
