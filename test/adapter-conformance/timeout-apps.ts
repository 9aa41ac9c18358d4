// One timeout app per framework: the same routes, with the timeout mounted in each framework's own idiom (app-wide,
// plus a per-route override), served over a real socket, so one body of scenarios runs against all three adapters.

import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RequestLifecycle, TimeoutOptions } from '@breakwater/core'
import { timeout as expressTimeout, timeoutErrorHandler } from '@breakwater/express'
import { timeout as fastifyTimeout } from '@breakwater/fastify'
import { timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import express, { type ErrorRequestHandler } from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'

/** What the handlers really did. */
export interface Seen {
  started: number
  completed: number
  /** `kind` of the abort reason each aborted handler observed. */
  aborted: string[]
  /** Late handlers that ran to the end of their write. */
  lateDone: number
  /** Errors that reached the framework's error path (Express error middleware, Fastify handler, Koa 'error'). */
  errors: unknown[]
}

export interface TimeoutApp {
  readonly url: string
  readonly seen: Seen
  close(): Promise<void>
}

/** The app-wide options; `/api/route-timeout` overrides `timeoutMs` with `ROUTE_TIMEOUT_MS`. */
export const ROUTE_TIMEOUT_MS = 100

/** The work of the routes, framework-free: each gets the request's lifecycle and the query. */
const work = {
  /** Waits `ms` on the request's signal, as a database call given the signal would. */
  async wait(seen: Seen, context: RequestLifecycle, ms: number): Promise<{ waited: number }> {
    seen.started++
    try {
      await sleep(ms, undefined, { signal: context.signal })
    } catch (error) {
      seen.aborted.push(String((error as { cause?: { kind?: string } }).cause?.kind))
      throw error
    }
    seen.completed++
    return { waited: ms }
  },
  /** An upstream call with a 30 ms budget that takes longer: fails with DeadlineExceededError. */
  async upstream(context: RequestLifecycle): Promise<never> {
    await sleep(5_000, undefined, { signal: context.timeoutSignal(30) })
    throw new Error('unreachable')
  },
}

const msOf = (value: unknown, fallback: number): number => (typeof value === 'string' ? Number(value) : fallback)

export async function startTimeoutApp(framework: Framework, options: TimeoutOptions): Promise<TimeoutApp> {
  const seen: Seen = { started: 0, completed: 0, aborted: [], lateDone: 0, errors: [] }
  const started = await builders[framework](options, seen)
  return { ...started, seen }
}

type Started = Omit<TimeoutApp, 'seen'>

const builders: Record<Framework, (options: TimeoutOptions, seen: Seen) => Promise<Started>> = {
  async express(options, seen) {
    const app = express()
    app.use(expressTimeout(options))
    app.use(express.json())
    const wait: express.RequestHandler = async (req, res) => {
      res.json(await work.wait(seen, req.breakwater, msOf(req.query.ms, 5_000)))
    }
    app.get('/api/wait', wait)
    app.get('/api/route-timeout', expressTimeout({ ...options, timeoutMs: ROUTE_TIMEOUT_MS }), wait)
    app.post('/api/echo', async (req, res) => {
      const context = req.breakwater
      await sleep(msOf(req.query.ms, 0))
      res.json({ body: req.body, aborted: context.signal.aborted })
    })
    app.get('/api/ignore', async (req, res) => {
      await sleep(msOf(req.query.ms, 0)) // ignores the signal
      res.status(200).json({ late: true })
      seen.lateDone++
    })
    app.get('/api/stream', async (req, res) => {
      res.type('text/plain').write('partial ')
      await work.wait(seen, req.breakwater, 5_000).catch(() => {})
    })
    app.get('/api/upstream', async (req) => work.upstream(req.breakwater))
    app.get('/api/budget', (req, res) => {
      req.breakwater.requireBudget(60_000)
      res.json({ unreachable: true })
    })
    app.get('/api/listeners', (req, res) => {
      const before = res.listenerCount('close')
      void req.breakwater.signal
      res.json({ before, after: res.listenerCount('close') })
    })
    app.get('/api/context', (req, res) => {
      const context = req.breakwater
      res.json({ timeoutMs: context.timeoutMs, forward: context.forwardHeaders(), deadline: context.deadline })
    })
    app.use(timeoutErrorHandler())
    const onError: ErrorRequestHandler = (error, _req, res, _next) => {
      seen.errors.push(error)
      res.status(error.status ?? 500).json({ error: String(error.message) })
    }
    app.use(onError)
    return serve(app.listen({ host: '127.0.0.1', port: 0 }))
  },

  async fastify(options, seen) {
    const app = Fastify()
    app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
      seen.errors.push(error)
      reply.code(error.statusCode ?? 500).send({ error: error.message })
    })
    await app.register(fastifyTimeout, options)
    const wait = async (request: { breakwater: RequestLifecycle; query: unknown }) =>
      work.wait(seen, request.breakwater, msOf((request.query as { ms?: string }).ms, 5_000))
    app.get('/api/wait', wait)
    app.get('/api/route-timeout', { config: { timeout: { timeoutMs: ROUTE_TIMEOUT_MS } } }, wait)
    app.post('/api/echo', async (request) => {
      await sleep(msOf((request.query as { ms?: string }).ms, 0))
      return { body: request.body, aborted: request.breakwater.signal.aborted }
    })
    app.get('/api/ignore', async (request) => {
      await sleep(msOf((request.query as { ms?: string }).ms, 0)) // ignores the signal
      seen.lateDone++
      return { late: true }
    })
    app.get('/api/stream', async (request, reply) => {
      reply.raw.writeHead(200, { 'content-type': 'text/plain' })
      reply.raw.write('partial ')
      await work.wait(seen, request.breakwater, 5_000).catch(() => {})
      return reply
    })
    app.get('/api/upstream', async (request) => work.upstream(request.breakwater))
    app.get('/api/budget', async (request) => {
      request.breakwater.requireBudget(60_000)
      return { unreachable: true }
    })
    app.get('/api/listeners', async (request, reply) => {
      const before = reply.raw.listenerCount('close')
      void request.breakwater.signal
      return { before, after: reply.raw.listenerCount('close') }
    })
    app.get('/api/context', async (request) => {
      const context = request.breakwater
      return { timeoutMs: context.timeoutMs, forward: context.forwardHeaders(), deadline: context.deadline }
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { url: `http://127.0.0.1:${addressPort(app.server)}`, close: () => app.close() }
  },

  async koa(options, seen) {
    const app = new Koa()
    app.on('error', (error: Error) => seen.errors.push(error))
    app.use(koaTimeout(options))
    const router = new Router()
    const wait = async (ctx: Koa.Context) => {
      ctx.body = await work.wait(seen, ctx.breakwater, msOf(ctx.query.ms, 5_000))
    }
    router.get('/api/wait', wait)
    router.get('/api/route-timeout', koaTimeout({ ...options, timeoutMs: ROUTE_TIMEOUT_MS }), wait)
    router.post('/api/echo', async (ctx) => {
      const chunks: Buffer[] = []
      for await (const chunk of ctx.req) chunks.push(chunk as Buffer)
      await sleep(msOf(ctx.query.ms, 0))
      ctx.body = {
        body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
        aborted: ctx.breakwater.signal.aborted,
      }
    })
    router.get('/api/ignore', async (ctx) => {
      await sleep(msOf(ctx.query.ms, 0)) // ignores the signal
      ctx.status = 200
      ctx.body = { late: true }
      seen.lateDone++
    })
    router.get('/api/stream', async (ctx) => {
      ctx.respond = false
      ctx.res.writeHead(200, { 'content-type': 'text/plain' })
      ctx.res.write('partial ')
      await work.wait(seen, ctx.breakwater, 5_000).catch(() => {})
    })
    router.get('/api/upstream', async (ctx) => work.upstream(ctx.breakwater))
    router.get('/api/budget', (ctx) => {
      ctx.breakwater.requireBudget(60_000)
      ctx.body = { unreachable: true }
    })
    router.get('/api/listeners', (ctx) => {
      const before = ctx.res.listenerCount('close')
      void ctx.breakwater.signal
      ctx.body = { before, after: ctx.res.listenerCount('close') }
    })
    router.get('/api/context', (ctx) => {
      const context = ctx.breakwater
      ctx.body = { timeoutMs: context.timeoutMs, forward: context.forwardHeaders(), deadline: context.deadline }
    })
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
    url: `http://127.0.0.1:${addressPort(server)}`,
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
