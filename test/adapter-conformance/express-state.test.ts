// Where the Express adapter keeps per-request state: in `res.locals`, never in new properties of Express's `req`
// or `res` (each one costs a request several µs there), while `req.breakwater` keeps working and no lifecycle
// depends on finding that state again.

import diagnostics from 'node:diagnostics_channel'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TimeoutDecisionEvent } from '@breakwater/core'
import { loadShedding, rateLimit, timeout, timeoutErrorHandler } from '@breakwater/express'
import express, { type Express, type Request, type RequestHandler, type Response } from 'express'
import { afterEach, describe, expect, it } from 'vitest'
import { rawRequest, until } from './support.js'

const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

async function listen(app: Express): Promise<string> {
  const server = app.listen(0, '127.0.0.1')
  servers.push(server)
  await new Promise((resolve) => server.once('listening', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** The own property keys (strings and symbols) of `req` and `res` as the handler sees them. */
interface OwnKeys {
  req: string[]
  res: string[]
}

const ownKeys = (target: object): string[] => Reflect.ownKeys(target).map(String).sort()

/** An app with `middleware` before a handler that records the own keys of `req` and `res`. */
async function recordingApp(middleware: RequestHandler[]): Promise<{ url: string; seen: OwnKeys[] }> {
  const seen: OwnKeys[] = []
  const app = express()
  for (const m of middleware) app.use(m)
  app.get('/', (req, res) => {
    seen.push({ req: ownKeys(req), res: ownKeys(res) })
    res.json({ ok: true })
  })
  return { url: await listen(app), seen }
}

describe('@breakwater/express per-request state', () => {
  it('adds no own property to req or res: rate limit, timeout and load shedding leave the same keys as none', async () => {
    const bare = await recordingApp([])
    const guarded = await recordingApp([
      timeout({ timeoutMs: 5_000 }),
      loadShedding({ limit: 100 }),
      rateLimit({ limit: 100, windowMs: 60_000 }),
    ])
    expect((await rawRequest(`${bare.url}/`)).status).toBe(200)
    const response = await rawRequest(`${guarded.url}/`)
    expect(response.status).toBe(200)
    expect(response.headers.ratelimit).toMatch(/^"default";r=99;t=\d+$/) // the policies did run
    expect(guarded.seen).toEqual(bare.seen)
  })

  it('req.breakwater is the request’s context under timeout(), undefined elsewhere, and assignable', async () => {
    const app = express()
    const seen: unknown[] = []
    app.get('/guarded', timeout({ timeoutMs: 5_000 }), (req, res) => {
      const context = req.breakwater
      seen.push(context?.timeoutMs, context?.signal instanceof AbortSignal, Object.hasOwn(req, 'breakwater'))
      res.json({ ok: true })
    })
    app.get('/plain', (req, res) => {
      seen.push(req.breakwater)
      req.breakwater = undefined as never
      seen.push(Object.hasOwn(req, 'breakwater'))
      res.json({ ok: true })
    })
    const url = await listen(app)
    expect((await rawRequest(`${url}/guarded`)).status).toBe(200)
    expect((await rawRequest(`${url}/plain`)).status).toBe(200)
    expect(seen).toEqual([5_000, true, false, undefined, true])
  })

  it('a handler answering before next() returns adds no close listener; a response still streaming keeps its permit', async () => {
    const shedding = loadShedding({ limit: 10 })
    const app = express()
    const listeners: Record<string, number> = {}
    const record: RequestHandler = (req, res) => {
      res.on('finish', () => {
        listeners[req.path] = res.listenerCount('close')
      })
      res.json({ ok: true })
    }
    app.get('/plain', record) // registered before the middleware: what Node and Express add on their own
    app.use(timeout({ timeoutMs: 5_000 }), shedding)
    app.get('/guarded', record)
    let finishStream: (() => void) | undefined
    app.get('/stream', (_req, res) => {
      res.write('first chunk\n')
      finishStream = () => res.end('last chunk\n')
    })
    const url = await listen(app)
    expect((await rawRequest(`${url}/plain`)).status).toBe(200)
    expect((await rawRequest(`${url}/guarded`)).status).toBe(200)
    expect(listeners['/guarded']).toBe(listeners['/plain'])
    expect(shedding.shedder.inflight).toBe(0)

    const streamed = rawRequest(`${url}/stream`)
    await until(() => finishStream !== undefined)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(shedding.shedder.inflight).toBe(1) // the handler returned, the response is still open
    finishStream?.()
    expect((await streamed).body).toBe('first chunk\nlast chunk\n')
    await until(() => shedding.shedder.inflight === 0)
  })

  it('an app that replaces res.locals loses no permit, timer or decision: every lifecycle still ends', async () => {
    const decisions: TimeoutDecisionEvent[] = []
    const onDecision = (event: unknown): void => {
      decisions.push(event as TimeoutDecisionEvent)
    }
    diagnostics.subscribe('breakwater:timeout:decision', onDecision)
    try {
      const shedding = loadShedding({ limit: 10 })
      const app = express()
      app.use(timeout({ timeoutMs: 5_000 }), shedding)
      app.use((_req: Request, res: Response, next) => {
        res.locals = { replaced: true } // a common idiom that drops everything kept in the old object
        next()
      })
      app.get('/', (_req, res) => {
        res.json({ ok: true })
      })
      app.use(timeoutErrorHandler())
      const url = await listen(app)
      for (let i = 0; i < 20; i++) expect((await rawRequest(`${url}/`)).status).toBe(200)
      // 'completed' is published when a context is disposed: each one left its deadline queue.
      await until(() => decisions.length === 20)
      expect(decisions.map((d) => d.outcome)).toEqual(Array(20).fill('completed'))
      expect(shedding.shedder.inflight).toBe(0)
    } finally {
      diagnostics.unsubscribe('breakwater:timeout:decision', onDecision)
    }
  })
})
