// One app per framework with Breakwater's one error handler mounted in each framework's idiom (Express error
// middleware, Fastify setErrorHandler, Koa outermost middleware), a timeout, a JSON body parser with a 1 KB limit
// and an idempotent route whose handler really sets a cookie; served over a real socket.

import type { Server } from 'node:http'
import { BreakwaterError, DeadlineExceededError, ErrorCode } from '@breakwater/core'
import {
  errorHandler as expressErrorHandler,
  idempotency as expressIdempotency,
  timeout as expressTimeout,
  keepRawBody,
} from '@breakwater/express'
import {
  errorHandler as fastifyErrorHandler,
  idempotency as fastifyIdempotency,
  timeout as fastifyTimeout,
} from '@breakwater/fastify'
import { errorHandler as koaErrorHandler, idempotency as koaIdempotency, timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import express, { type ErrorRequestHandler } from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'
import { jsonBody } from './idempotency-apps.js'

export const BODY_LIMIT = 1024

export interface ErrorApp {
  readonly url: string
  /** Orders the idempotent handler really executed. */
  executed(): number
  close(): Promise<void>
}

/** A Breakwater error of a policy that does not exist yet: a status and a Retry-After are all it needs. */
class BusyError extends BreakwaterError {
  constructor() {
    super(ErrorCode.Overloaded, 'The pricing dependency is saturated.', { status: 503, retryAfterSeconds: 7 })
  }
}

const failures: Record<string, () => Error> = {
  deadline: () => new DeadlineExceededError('no budget left for the pricing call'),
  busy: () => new BusyError(),
  boom: () => new Error('an internal failure at /srv/app/secret.js:12'),
}

export async function startErrorApp(framework: Framework): Promise<ErrorApp> {
  let executed = 0
  const order = () => ++executed
  const options = { scope: () => 'caller', required: true }
  if (framework === 'express') {
    const app = express()
    app.use(expressTimeout({ timeoutMs: 2000 }))
    app.post(
      '/orders',
      express.json({ limit: BODY_LIMIT, verify: keepRawBody }),
      expressIdempotency(options),
      (req, res) => {
        const id = order()
        res.cookie('session', `s${id}`, { httpOnly: true })
        res.status(201).json({ id, amount: req.body?.amount })
      },
    )
    app.get('/fail/:kind', (req) => {
      throw failures[req.params.kind as string]?.()
    })
    app.use(expressErrorHandler())
    const fallback: ErrorRequestHandler = (_error, _req, res, _next) => {
      res.status(500).type('text/plain').send('app handler')
    }
    app.use(fallback)
    return serve(app.listen(0, '127.0.0.1'), () => executed)
  }
  if (framework === 'fastify') {
    const app = Fastify({ bodyLimit: BODY_LIMIT })
    app.setErrorHandler(fastifyErrorHandler())
    await app.register(fastifyTimeout, { timeoutMs: 2000 })
    await app.register(fastifyIdempotency, { ...options, global: false })
    app.post('/orders', { config: { idempotency: {} } }, async (request, reply) => {
      const id = order()
      reply.header('set-cookie', `session=s${id}; HttpOnly`)
      reply.code(201)
      return { id, amount: (request.body as { amount?: unknown } | undefined)?.amount }
    })
    app.get('/fail/:kind', async (request) => {
      throw failures[(request.params as { kind: string }).kind]?.()
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    return { url: `http://127.0.0.1:${port}`, executed: () => executed, close: () => app.close() }
  }
  const app = new Koa()
  app.silent = true // an error Breakwater passes on is Koa's to answer (500 text), not the test's output
  app.use(koaErrorHandler())
  app.use(koaTimeout({ timeoutMs: 2000 }))
  const router = new Router()
  router.post('/orders', jsonBody(BODY_LIMIT), koaIdempotency(options), (ctx) => {
    const id = order()
    ctx.cookies.set('session', `s${id}`, { httpOnly: true })
    ctx.status = 201
    ctx.body = { id, amount: (ctx.request.body as { amount?: unknown } | undefined)?.amount }
  })
  router.get('/fail/:kind', (ctx) => {
    throw failures[ctx.params.kind as string]?.()
  })
  app.use(router.routes())
  return serve(app.listen(0, '127.0.0.1'), () => executed)
}

async function serve(server: Server, executed: () => number): Promise<ErrorApp> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    executed,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}
