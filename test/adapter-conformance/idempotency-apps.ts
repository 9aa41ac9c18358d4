// One idempotency app per framework: the same routes, the policy mounted in each framework's own idiom (Express
// and Koa middleware on the routes after a JSON body parser, the Fastify plugin), served over a real socket.

import type { Server } from 'node:http'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencyOptions } from '@breakwater/core'
import { idempotency as expressIdempotency } from '@breakwater/express'
import { idempotency as fastifyIdempotency } from '@breakwater/fastify'
import { idempotency as koaIdempotency } from '@breakwater/koa'
import Router from '@koa/router'
import express, { type ErrorRequestHandler } from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'

export interface IdempotencyApp {
  readonly url: string
  /** How many times a handler really ran, per route name (`orders`, `stream`, `big`, `fail`, `list`). */
  handled(route: string): number
  close(): Promise<void>
}

/** The routes, framework-free: each returns status, headers and body (or a stream) for the framework to send. */
interface Answer {
  status: number
  headers: Record<string, string>
  body: unknown
}

const query = (url: string, name: string): string | null => new URL(url, 'http://x').searchParams.get(name)

async function answer(route: string, url: string, body: unknown, count: () => number): Promise<Answer> {
  const delay = Number(query(url, 'delayMs') ?? 0)
  if (delay > 0) await sleep(delay)
  const id = count()
  switch (route) {
    case 'orders': {
      const status = Number(query(url, 'status') ?? 201)
      return {
        status,
        headers: { Location: `/orders/${id}`, 'Set-Cookie': `session=${id}; HttpOnly`, 'X-Order': String(id) },
        body: { id, body },
      }
    }
    case 'big':
      return { status: 201, headers: {}, body: { id, pad: 'x'.repeat(Number(query(url, 'bytes') ?? 0)) } }
    case 'stream':
      return {
        status: 201,
        headers: { 'Content-Type': 'text/plain' },
        body: Readable.from([`part-1 of ${id}\n`, 'part-2\n']),
      }
    default:
      throw Object.assign(new Error(`handler ${id} failed`), { status: 500 })
  }
}

const ROUTES = ['orders', 'big', 'stream', 'fail'] as const

export async function startIdempotencyApp(framework: Framework, options: IdempotencyOptions): Promise<IdempotencyApp> {
  const counts = new Map<string, number>()
  const counter = (route: string) => () => {
    const n = (counts.get(route) ?? 0) + 1
    counts.set(route, n)
    return n
  }
  const scoped: IdempotencyOptions = { scope: (request) => request.header('authorization'), ...options }
  const started = await builders[framework](scoped, counter)
  return { url: started.url, handled: (route) => counts.get(route) ?? 0, close: started.close }
}

type Counter = (route: string) => () => number
type Started = Pick<IdempotencyApp, 'url' | 'close'>

const builders: Record<Framework, (options: IdempotencyOptions, counter: Counter) => Promise<Started>> = {
  async express(options, counter) {
    const app = express()
    app.use(express.json())
    const policy = expressIdempotency(options)
    for (const route of ROUTES) {
      app.post(`/${route}`, policy, async (req, res, next) => {
        try {
          const a = await answer(route, req.url, req.body, counter(route))
          res.status(a.status).set(a.headers)
          if (a.body instanceof Readable) a.body.pipe(res)
          else res.json(a.body)
        } catch (error) {
          next(error)
        }
      })
    }
    app.get('/orders', policy, (_req, res) => {
      counter('list')()
      res.json([])
    })
    const onError: ErrorRequestHandler = (error, _req, res, _next) => {
      res.status(error.status ?? 500).json({ error: String(error.message) })
    }
    app.use(onError)
    return serve(app.listen(0, '127.0.0.1'))
  },

  async fastify(options, counter) {
    const app = Fastify()
    await app.register(fastifyIdempotency, options)
    for (const route of ROUTES) {
      app.post(`/${route}`, async (request, reply) => {
        const a = await answer(route, request.url, request.body, counter(route))
        reply.code(a.status).headers(a.headers)
        return a.body
      })
    }
    app.get('/orders', async () => {
      counter('list')()
      return []
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { url: `http://127.0.0.1:${port(app.server)}`, close: () => app.close() }
  },

  async koa(options, counter) {
    const app = new Koa()
    app.on('error', () => {})
    app.use(jsonBody())
    const policy = koaIdempotency(options)
    const router = new Router()
    for (const route of ROUTES) {
      router.post(`/${route}`, policy, async (ctx) => {
        const a = await answer(route, ctx.url, ctx.request.body, counter(route))
        ctx.status = a.status
        ctx.set(a.headers)
        ctx.body = a.body
      })
    }
    router.get('/orders', policy, (ctx) => {
      counter('list')()
      ctx.body = []
    })
    app.use(router.routes())
    return serve(app.listen(0, '127.0.0.1'))
  },
}

declare module 'koa' {
  interface Request {
    body?: unknown
  }
}

/**
 * Koa has no body parser built in: a minimal JSON one, as koa-bodyparser would set `ctx.request.body` and
 * `rawBody` (the raw text makes the idempotency fingerprint lossless). A body over `limit` bytes is 413.
 */
export function jsonBody(limit = 1024 * 1024): Koa.Middleware {
  return async function parseJson(ctx: Koa.Context, next: Koa.Next): Promise<void> {
    if (ctx.method === 'POST' && ctx.is('application/json')) {
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of ctx.req) {
        size += (chunk as Buffer).length
        if (size > limit) ctx.throw(413, 'request entity too large')
        chunks.push(chunk as Buffer)
      }
      const request = ctx.request as { body?: unknown; rawBody?: string }
      request.rawBody = Buffer.concat(chunks).toString('utf8')
      try {
        request.body = JSON.parse(request.rawBody)
      } catch {
        ctx.throw(400, 'Invalid JSON body')
      }
    }
    await next()
  }
}

/** Resolve once `server` listens: its URL, and a close that also ends kept-alive connections. */
export async function serve(server: Server): Promise<Started> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  return {
    url: `http://127.0.0.1:${port(server)}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

function port(server: Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP')
  return address.port
}
