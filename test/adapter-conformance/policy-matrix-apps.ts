// One app per framework and store for the one-response matrix: a timeout on every route, and one route per
// combination of idempotency × load shedding × rate limit (`/m/<i><s><r>`, each digit 0 or 1), mounted in each
// framework's own idiom. The handler first sets response headers of its own (HANDLER_HEADERS, as a handler
// preparing its 201 would), holds for `holdMs`, then either writes its 201 late (`mode=late`, the signal ignored)
// or fails with its request's abort (`mode=abort`, the signal honoured).

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type IdempotencyOptions,
  type LoadSheddingOptions,
  MemoryIdempotencyStore,
  MemoryRateLimitStore,
  type RateLimitOptions,
  type RequestLifecycle,
} from '@breakwater/core'
import {
  idempotency as expressIdempotency,
  loadShedding as expressLoadShedding,
  rateLimit as expressRateLimit,
  timeout as expressTimeout,
  timeoutErrorHandler,
} from '@breakwater/express'
import {
  idempotency as fastifyIdempotency,
  loadShedding as fastifyLoadShedding,
  rateLimit as fastifyRateLimit,
  timeout as fastifyTimeout,
} from '@breakwater/fastify'
import {
  idempotency as koaIdempotency,
  loadShedding as koaLoadShedding,
  rateLimit as koaRateLimit,
  timeout as koaTimeout,
} from '@breakwater/koa'
import { RedisIdempotencyStore, RedisRateLimitStore } from '@breakwater/redis'
import Router from '@koa/router'
import express, { type ErrorRequestHandler, type RequestHandler } from 'express'
import Fastify from 'fastify'
import type { Redis } from 'ioredis'
import Koa from 'koa'
import type { Framework } from './apps.js'
import { jsonBody, serve } from './idempotency-apps.js'
import type { StoreKind } from './support.js'

/** Every combination of the three optional policies, as route names: `/m/101` = idempotency and rate limit. */
export const COMBINATIONS = ['000', '001', '010', '011', '100', '101', '110', '111'] as const
export type Combination = (typeof COMBINATIONS)[number]

export interface MatrixApp {
  readonly url: string
  /** Handlers that started, per route. */
  readonly started: () => number
  close(): Promise<void>
}

export interface MatrixOptions {
  timeoutMs: number
  store: StoreKind
  /** The Redis client for `store: 'redis'`. */
  client?: Redis
}

interface Policies {
  idempotency: IdempotencyOptions
  shedding: LoadSheddingOptions
  rateLimit: RateLimitOptions
}

/** Generous limits: every request is admitted, so the deadline or shutdown is what answers it. */
function policiesFor(options: MatrixOptions): Policies {
  const prefix = `bw:matrix:${randomUUID().slice(0, 8)}:`
  const redis = options.store === 'redis' ? options.client : undefined
  return {
    idempotency: {
      scope: (request) => request.header('authorization'),
      store: redis ? new RedisIdempotencyStore({ client: redis, prefix }) : new MemoryIdempotencyStore(),
      storeTimeoutMs: 2000,
    },
    shedding: { limit: 10_000 },
    rateLimit: {
      limit: 100_000,
      windowMs: 60_000,
      store: redis ? new RedisRateLimitStore({ client: redis, prefix }) : new MemoryRateLimitStore(),
      storeTimeoutMs: 2000,
    },
  }
}

const on = (combination: string, at: number): boolean => combination[at] === '1'

/** Headers each handler sets before it holds: they describe its 201, never a problem answered in its place. */
export const HANDLER_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['ETag', '"order-etag"'],
  ['Location', '/orders/held'],
  ['X-Order-Id', 'held'],
]

/** The handler's work, framework-free; `setHeader` sets a response header in the framework's idiom. */
async function handle(
  context: RequestLifecycle | undefined,
  url: string,
  count: () => void,
  setHeader: (name: string, value: string) => void,
): Promise<{ id: string }> {
  count()
  for (const [name, value] of HANDLER_HEADERS) setHeader(name, value)
  const query = new URL(url, 'http://x').searchParams
  const holdMs = Number(query.get('holdMs') ?? 0)
  if (query.get('mode') === 'abort') await sleep(holdMs, undefined, { signal: context?.signal })
  else await sleep(holdMs)
  return { id: randomUUID() }
}

export async function startMatrixApp(framework: Framework, options: MatrixOptions): Promise<MatrixApp> {
  let started = 0
  const count = (): void => {
    started++
  }
  const app = await builders[framework](options, policiesFor(options), count)
  return { url: app.url, started: () => started, close: app.close }
}

type Started = Pick<MatrixApp, 'url' | 'close'>

const builders: Record<Framework, (options: MatrixOptions, policies: Policies, count: () => void) => Promise<Started>> =
  {
    async express(options, policies, count) {
      const app = express()
      app.use(expressTimeout({ timeoutMs: options.timeoutMs }))
      const idempotent = expressIdempotency(policies.idempotency)
      const shedding = expressLoadShedding(policies.shedding)
      const limited = expressRateLimit(policies.rateLimit)
      for (const combination of COMBINATIONS) {
        const chain: RequestHandler[] = []
        if (on(combination, 2)) chain.push(limited)
        if (on(combination, 1)) chain.push(shedding)
        chain.push(express.json())
        if (on(combination, 0)) chain.push(idempotent)
        app.post(`/m/${combination}`, ...chain, async (req, res, next) => {
          try {
            const body = await handle(req.breakwater, req.url, count, (name, value) => res.set(name, value))
            res.status(201).json(body)
          } catch (error) {
            next(error)
          }
        })
      }
      app.use(timeoutErrorHandler())
      app.use(((error, _req, res, _next) => {
        res.status(500).json({ error: String(error.message) })
      }) as ErrorRequestHandler)
      return serve(app.listen(0, '127.0.0.1'))
    },

    async fastify(options, policies, count) {
      const app = Fastify()
      await app.register(fastifyTimeout, { timeoutMs: options.timeoutMs })
      await app.register(fastifyRateLimit, policies.rateLimit)
      await app.register(fastifyLoadShedding, policies.shedding)
      await app.register(fastifyIdempotency, policies.idempotency)
      for (const combination of COMBINATIONS) {
        // Each plugin covers every route; `false` takes a route out.
        const config = {
          idempotency: on(combination, 0) ? undefined : false,
          loadShedding: on(combination, 1) ? undefined : false,
          rateLimit: on(combination, 2) ? undefined : false,
        } as const
        app.post(`/m/${combination}`, { config }, async (request, reply) => {
          reply.code(201)
          return handle(request.breakwater ?? undefined, request.url, count, (name, value) => reply.header(name, value))
        })
      }
      await app.listen({ host: '127.0.0.1', port: 0 })
      const address = app.server.address()
      if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
      return { url: `http://127.0.0.1:${address.port}`, close: () => app.close() }
    },

    async koa(options, policies, count) {
      const app = new Koa()
      app.silent = true
      app.use(koaTimeout({ timeoutMs: options.timeoutMs }))
      const idempotent = koaIdempotency(policies.idempotency)
      const shedding = koaLoadShedding(policies.shedding)
      const limited = koaRateLimit(policies.rateLimit)
      const router = new Router()
      for (const combination of COMBINATIONS) {
        const chain: Koa.Middleware[] = []
        if (on(combination, 2)) chain.push(limited)
        if (on(combination, 1)) chain.push(shedding)
        chain.push(jsonBody())
        if (on(combination, 0)) chain.push(idempotent)
        router.post(`/m/${combination}`, ...chain, async (ctx) => {
          const body = await handle(ctx.breakwater, ctx.url, count, (name, value) => ctx.set(name, value))
          ctx.status = 201
          ctx.body = body
        })
      }
      app.use(router.routes())
      return serve(app.listen(0, '127.0.0.1'))
    },
  }
