// The same three policies on Express, Fastify and Koa, served behind a real OpenTelemetry SERVER span per
// request (made active around the framework's listener, as the HTTP instrumentation does), so decisions can be
// checked on the span of the request they belong to.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  loadShedding as expressLoadShedding,
  rateLimit as expressRateLimit,
  timeout as expressTimeout,
  timeoutErrorHandler,
} from '@breakwater/express'
import {
  loadShedding as fastifyLoadShedding,
  rateLimit as fastifyRateLimit,
  timeout as fastifyTimeout,
} from '@breakwater/fastify'
import { loadShedding as koaLoadShedding, rateLimit as koaRateLimit, timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import { context, SpanKind, type Tracer, trace } from '@opentelemetry/api'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'

export const FRAMEWORKS = ['express', 'fastify', 'koa'] as const
export type Framework = (typeof FRAMEWORKS)[number]

/** Budget of GET /slow, whose handler waits far longer on the request signal. */
export const SLOW_TIMEOUT_MS = 60

export interface TracedApp {
  readonly url: string
  /** Let every held GET /work handler answer. */
  release(): void
  close(): Promise<void>
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void

/** A SERVER span per request, active while the framework handles it, ended when the response closes. */
function traced(tracer: Tracer, listener: Listener): Listener {
  return (req, res) => {
    const span = tracer.startSpan(`${req.method} ${req.url}`, {
      kind: SpanKind.SERVER,
      attributes: { 'http.request.method': req.method ?? '', 'url.path': req.url ?? '' },
    })
    res.once('close', () => {
      span.setAttribute('http.response.status_code', res.statusCode)
      span.end()
    })
    context.with(trace.setSpan(context.active(), span), () => listener(req, res))
  }
}

/** The handler of GET /work: held until release(). */
function holder() {
  let open: () => void = () => {}
  let gate = new Promise<void>((resolve) => {
    open = resolve
  })
  return {
    wait: () => gate,
    release() {
      open()
      gate = new Promise<void>((resolve) => {
        open = resolve
      })
    },
  }
}

const LIMIT = { id: 'limited', limit: 5, windowMs: 60_000 }
const SHEDDING = { id: 'work', limit: 1, queue: { size: 1, targetMs: 5_000, intervalMs: 10_000 } }

export async function startTracedApp(framework: Framework, tracer: Tracer): Promise<TracedApp> {
  const work = holder()
  const slow = async (signal: AbortSignal | undefined) => {
    await sleep(10_000, undefined, { signal })
    return 'late'
  }
  if (framework === 'express') {
    const app = express()
    app.get('/limited', expressRateLimit(LIMIT), (_req, res) => {
      res.json({ ok: true })
    })
    app.get('/slow', expressTimeout({ timeoutMs: SLOW_TIMEOUT_MS }), async (req, res, next) => {
      try {
        res.json(await slow(req.breakwater?.signal))
      } catch (error) {
        next(error)
      }
    })
    app.get('/work', expressLoadShedding(SHEDDING), async (_req, res) => {
      await work.wait()
      res.json({ ok: true })
    })
    app.use(timeoutErrorHandler())
    return serve(createServer(traced(tracer, app)), work)
  }
  if (framework === 'fastify') {
    const app = Fastify({ serverFactory: (handler) => createServer(traced(tracer, handler)) })
    await app.register(fastifyRateLimit, { global: false })
    await app.register(fastifyTimeout, { timeoutMs: 10_000 })
    app.get('/limited', { config: { rateLimit: LIMIT } }, async () => ({ ok: true }))
    app.get('/slow', { config: { timeout: { timeoutMs: SLOW_TIMEOUT_MS } } }, async (request) =>
      slow(request.breakwater?.signal),
    )
    await app.register(async (scope) => {
      await scope.register(fastifyLoadShedding, SHEDDING)
      scope.get('/work', async () => {
        await work.wait()
        return { ok: true }
      })
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as AddressInfo
    return { url: `http://127.0.0.1:${port}`, release: work.release, close: () => app.close() }
  }
  const app = new Koa()
  app.silent = true
  const router = new Router()
  router.get('/limited', koaRateLimit(LIMIT), (ctx) => {
    ctx.body = { ok: true }
  })
  router.get('/slow', koaTimeout({ timeoutMs: SLOW_TIMEOUT_MS }), async (ctx) => {
    ctx.body = await slow(ctx.breakwater?.signal)
  })
  router.get('/work', koaLoadShedding(SHEDDING), async (ctx) => {
    await work.wait()
    ctx.body = { ok: true }
  })
  app.use(router.routes())
  return serve(createServer(traced(tracer, app.callback())), work)
}

async function serve(server: Server, work: ReturnType<typeof holder>): Promise<TracedApp> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    release: work.release,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
