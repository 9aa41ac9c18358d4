// One load-shedding app per framework: the same routes, with the shedder mounted in each framework's own idiom
// (app-wide, before body parsing; probes excluded), served over a real socket for the conformance suite.

import type { Server } from 'node:http'
import type { LoadShedder, LoadSheddingOptions } from '@breakwater/core'
import { requestContext } from '@breakwater/core/adapter'
import { loadShedding as expressLoadShedding } from '@breakwater/express'
import { loadShedding as fastifyLoadShedding } from '@breakwater/fastify'
import { loadShedding as koaLoadShedding } from '@breakwater/koa'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import type { Framework } from './apps.js'

/** What the handlers really did. */
export interface Seen {
  started: number
  completed: number
  aborted: number
}

export interface SheddingApp {
  readonly url: string
  readonly seen: Seen
  readonly shedder: LoadShedder
  /** Let every handler waiting on the gate finish. */
  open(): void
  close(): Promise<void>
}

/** The routes' work, framework-free. `hold` waits for the gate (or the client leaving). */
function work(seen: Seen) {
  let openGate = (): void => {}
  const newGate = () => new Promise<void>((resolve) => (openGate = resolve))
  let gate = newGate()
  return {
    open() {
      openGate()
      gate = newGate()
    },
    async hold(signal: AbortSignal): Promise<{ held: true }> {
      seen.started++
      const aborted = new Promise<never>((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true })
      })
      aborted.catch(() => {})
      try {
        await Promise.race([gate, aborted])
      } catch (error) {
        seen.aborted++
        throw error
      }
      seen.completed++
      return { held: true }
    },
    boom(): never {
      seen.started++
      throw new Error('boom')
    },
    async later(): Promise<never> {
      seen.started++
      await new Promise((resolve) => setTimeout(resolve, 5))
      throw new Error('later boom')
    },
  }
}

export async function startSheddingApp(framework: Framework, options: LoadSheddingOptions): Promise<SheddingApp> {
  const seen: Seen = { started: 0, completed: 0, aborted: 0 }
  const routes = work(seen)
  const started = await builders[framework]({ exclude: ['/readyz'], ...options }, routes)
  return { ...started, seen, open: routes.open }
}

type Routes = ReturnType<typeof work>
type Started = Pick<SheddingApp, 'url' | 'shedder' | 'close'>

const builders: Record<Framework, (options: LoadSheddingOptions, routes: Routes) => Promise<Started>> = {
  async express(options, routes) {
    const app = express()
    const shedding = expressLoadShedding(options)
    app.use(shedding)
    app.use(express.json())
    app.get('/api/hold', async (_req, res) => {
      res.json(await routes.hold(requestContext(res).signal))
    })
    app.get('/api/boom', () => routes.boom())
    app.get('/api/later', async () => routes.later())
    app.post('/api/echo', (req, res) => {
      res.json(req.body)
    })
    app.get('/readyz', (_req, res) => {
      res.json(shedding.overloadState())
    })
    app.use(((error, _req, res, _next) => {
      res.status(500).json({ error: String(error.message) })
    }) as express.ErrorRequestHandler)
    return { ...(await serve(app.listen({ host: '127.0.0.1', port: 0 }))), shedder: shedding.shedder }
  },

  async fastify(options, routes) {
    const app = Fastify()
    await app.register(fastifyLoadShedding, { ...options, exclude: [] })
    app.get('/api/hold', async (_request, reply) => routes.hold(requestContext(reply.raw).signal))
    app.get('/api/boom', () => routes.boom())
    app.get('/api/later', async () => routes.later())
    app.post('/api/echo', async (request) => request.body)
    app.get('/readyz', { config: { loadShedding: false } }, async () => app.loadShedding.overloadState())
    await app.listen({ host: '127.0.0.1', port: 0 })
    const address = app.server.address()
    if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
    return { url: `http://127.0.0.1:${address.port}`, shedder: app.loadShedding, close: () => app.close() }
  },

  async koa(options, routes) {
    const app = new Koa()
    app.silent = true
    const shedding = koaLoadShedding(options)
    app.use(shedding)
    const router = new Router()
    router.get('/api/hold', async (ctx) => {
      ctx.body = await routes.hold(requestContext(ctx.res).signal)
    })
    router.get('/api/boom', () => routes.boom())
    router.get('/api/later', async () => routes.later())
    router.post('/api/echo', async (ctx) => {
      const chunks: Buffer[] = []
      for await (const chunk of ctx.req) chunks.push(chunk as Buffer)
      ctx.body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    })
    router.get('/readyz', (ctx) => {
      ctx.body = shedding.overloadState()
    })
    app.use(router.routes())
    return { ...(await serve(app.listen({ host: '127.0.0.1', port: 0 }))), shedder: shedding.shedder }
  },
}

async function serve(server: Server): Promise<Omit<Started, 'shedder'>> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}
