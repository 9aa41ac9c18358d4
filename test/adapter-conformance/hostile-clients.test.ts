// Hostile and unusual clients against every adapter over real sockets: clients on IPv6 (::1), a slowloris body
// trickling in past the deadline, and CPU-bound handlers that drive the event loop into pressure shedding.

import { execFileSync } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import http, { type Server } from 'node:http'
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { LoadShedder, RateLimitDecisionEvent } from '@breakwater/core'
import {
  errorHandler as expressErrorHandler,
  loadShedding as expressLoadShedding,
  rateLimit as expressRateLimit,
  timeout as expressTimeout,
} from '@breakwater/express'
import {
  loadShedding as fastifyLoadShedding,
  rateLimit as fastifyRateLimit,
  timeout as fastifyTimeout,
} from '@breakwater/fastify'
import { loadShedding as koaLoadShedding, rateLimit as koaRateLimit, timeout as koaTimeout } from '@breakwater/koa'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { FRAMEWORKS, type Framework } from './apps.js'
import { jsonBody } from './idempotency-apps.js'
import { until } from './support.js'

interface HostileApp {
  readonly port: number
  /** Handler runs per route (`echo`, `cpu`, `light`, `limited`). */
  ran(route: string): number
  /** Why the shedder is overloaded right now (`event-loop-delay` under CPU pressure). */
  reasons(): readonly string[]
  close(): Promise<void>
}

const SLOW_BODY_DEADLINE_MS = 300
/** Pressure: the mean event-loop delay over each 150 ms sample above 40 ms sheds everything sheddable. */
const PRESSURE = { maxEventLoopDelayMs: 40, sampleIntervalMs: 150 }

/** Keep the event loop busy for `ms`, as a CPU-bound handler (JSON of a huge document, a hash loop) would. */
function burn(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // busy
  }
}

async function startHostileApp(framework: Framework, host: string): Promise<HostileApp> {
  const runs = new Map<string, number>()
  const ran = (route: string) => runs.set(route, (runs.get(route) ?? 0) + 1)
  const limiter = { id: `v6-${framework}`, limit: 2, windowMs: '1m' }
  if (framework === 'express') {
    const app = express()
    app.use(expressTimeout({ timeoutMs: SLOW_BODY_DEADLINE_MS }))
    const shedding = expressLoadShedding({ limit: 1000, pressure: PRESSURE })
    app.post('/echo', express.json(), (req, res) => {
      ran('echo')
      res.json(req.body)
    })
    app.get('/cpu', shedding, (req, res) => {
      ran('cpu')
      burn(Number(req.query.ms))
      res.json({ ok: true })
    })
    app.get('/light', shedding, (_req, res) => {
      ran('light')
      res.json({ ok: true })
    })
    app.get('/limited', expressRateLimit(limiter), (req, res) => {
      ran('limited')
      res.json({ ip: req.ip })
    })
    app.use(expressErrorHandler())
    const server = app.listen(0, host)
    return servedWith(server, runs, shedding.shedder)
  }
  if (framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyTimeout, { timeoutMs: SLOW_BODY_DEADLINE_MS })
    await app.register(fastifyRateLimit, { global: false })
    app.post('/echo', async (request) => {
      ran('echo')
      return request.body
    })
    app.get('/limited', { config: { rateLimit: limiter } }, async (request) => {
      ran('limited')
      return { ip: request.ip }
    })
    let reasons = (): readonly string[] => []
    let closeShedder = () => {}
    await app.register(async (scope) => {
      await scope.register(fastifyLoadShedding, { limit: 1000, pressure: PRESSURE })
      reasons = () => scope.loadShedding.overloadState().reasons
      closeShedder = () => scope.loadShedding.close()
      scope.get('/cpu', async (request) => {
        ran('cpu')
        burn(Number((request.query as { ms: string }).ms))
        return { ok: true }
      })
      scope.get('/light', async () => {
        ran('light')
        return { ok: true }
      })
    })
    await app.listen({ host, port: 0 })
    return served(app.server, runs, reasons, async () => {
      closeShedder()
      await app.close()
    })
  }
  const app = new Koa()
  app.silent = true
  app.use(koaTimeout({ timeoutMs: SLOW_BODY_DEADLINE_MS }))
  const shedding = koaLoadShedding({ limit: 1000, pressure: PRESSURE })
  const router = new Router()
  router.post('/echo', jsonBody(), (ctx) => {
    ran('echo')
    ctx.body = ctx.request.body
  })
  router.get('/cpu', shedding, (ctx) => {
    ran('cpu')
    burn(Number(ctx.query.ms))
    ctx.body = { ok: true }
  })
  router.get('/light', shedding, (ctx) => {
    ran('light')
    ctx.body = { ok: true }
  })
  router.get('/limited', koaRateLimit(limiter), (ctx) => {
    ran('limited')
    ctx.body = { ip: ctx.ip }
  })
  app.use(router.routes())
  const server = app.listen(0, host)
  return servedWith(server, runs, shedding.shedder)
}

async function served(
  server: Server,
  runs: Map<string, number>,
  reasons: () => readonly string[],
  close: () => Promise<void>,
): Promise<HostileApp> {
  await new Promise<void>((resolve, reject) => {
    if (server.listening) resolve()
    server.once('listening', resolve).once('error', reject)
  })
  return { port: (server.address() as net.AddressInfo).port, ran: (route) => runs.get(route) ?? 0, reasons, close }
}

/** A plain Node server (Express, Koa) with its route-level shedder. */
function servedWith(server: Server, runs: Map<string, number>, shedder: LoadShedder): Promise<HostileApp> {
  const close = () =>
    new Promise<void>((resolve, reject) => {
      shedder.close()
      server.close((error) => (error ? reject(error) : resolve()))
      server.closeAllConnections()
    })
  return served(server, runs, () => shedder.overloadState().reasons, close)
}

const open: HostileApp[] = []
afterEach(async () => {
  for (const app of open.splice(0)) await app.close()
})

async function start(framework: Framework, host = '127.0.0.1'): Promise<HostileApp> {
  const app = await startHostileApp(framework, host)
  open.push(app)
  return app
}

function get(host: string, port: number, path: string): Promise<{ status: number; body: string; ms: number }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const request = http.get({ host, port, path, agent: false, family: net.isIPv6(host) ? 6 : 4 }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        body += chunk
      })
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, ms: performance.now() - started }))
    })
    request.on('error', reject)
  })
}

describe('IPv6 loopback', () => {
  beforeAll(() => {
    // No skipping: a machine without ::1 must fail this suite loudly, not pass it by leaving it out.
    const addresses = execFileSync('ip', ['-6', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8' })
    if (!/inet6 ::1\/128/.test(addresses)) {
      throw new Error(`This machine has no IPv6 loopback (::1): \`ip -6 addr show dev lo\` printed:\n${addresses}`)
    }
  })

  it.each(FRAMEWORKS)('%s: a client on ::1 is seen as ::1 and limited like any other', async (framework) => {
    const app = await start(framework, '::1')
    const events: RateLimitDecisionEvent[] = []
    const listener = (message: unknown) => events.push(message as RateLimitDecisionEvent)
    diagnostics.subscribe('breakwater:rate-limit:decision', listener)
    try {
      const answers = [] as Array<{ status: number; body: string }>
      for (let i = 0; i < 3; i++) answers.push(await get('::1', app.port, '/limited'))
      expect(answers.map((a) => a.status)).toEqual([200, 200, 429])
      expect(JSON.parse(answers[0]!.body)).toEqual({ ip: '::1' })
      expect(JSON.parse(answers[2]!.body)).toMatchObject({ code: 'BW_RATE_LIMITED' })
      const mine = events.filter((e) => e.policy === `v6-${framework}`)
      expect(mine.map((e) => e.outcome)).toEqual(['allowed', 'allowed', 'limited'])
      expect(mine.every((e) => e.request?.ip === '::1')).toBe(true)
      expect(app.ran('limited')).toBe(2)
    } finally {
      diagnostics.unsubscribe('breakwater:rate-limit:decision', listener)
    }
  })
})

describe.each(FRAMEWORKS)('%s against a slowloris body', (framework) => {
  it('answers 503 BW_TIMEOUT at the deadline while the body still trickles in, closes that connection, never runs the handler', async () => {
    const app = await start(framework)
    const socket = net.connect(app.port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      received += chunk
    })
    let closed = false
    socket.on('close', () => {
      closed = true
    })
    socket.on('error', () => {})
    const started = performance.now()
    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{')
    // One byte every 50 ms: the 400-byte body would take 20 s; the deadline is 300 ms after the headers.
    const trickle = setInterval(() => {
      if (!socket.destroyed) socket.write(' ')
    }, 50)
    try {
      await until(() => received.includes('\r\n\r\n{'), 3_000)
      const elapsed = performance.now() - started
      expect(received).toMatch(/^HTTP\/1\.1 503 /)
      expect(received).toMatch(/content-type: application\/problem\+json/i)
      expect(received).toMatch(/"code":"BW_TIMEOUT"/)
      expect(elapsed).toBeGreaterThanOrEqual(SLOW_BODY_DEADLINE_MS - 5)
      expect(elapsed).toBeLessThan(SLOW_BODY_DEADLINE_MS + 1_200) // the deadline, not the 20 s the body takes
      expect(app.ran('echo')).toBe(0)
      // The slow client keeps trickling: the server must not keep its connection for it.
      await until(() => closed, 2_000)
    } finally {
      clearInterval(trickle)
      socket.destroy()
    }
  })
})

describe.each(FRAMEWORKS)('%s under event-loop pressure from CPU-bound handlers', (framework) => {
  it('sheds with 503 BW_OVERLOADED (reason event-loop-delay) while handlers hog the loop, and recovers after', async () => {
    const app = await start(framework)
    expect((await get('127.0.0.1', app.port, '/light')).status).toBe(200)
    // Eight handlers of 120 ms each, back to back: about a second in which the loop answers nothing else.
    const burners = Array.from({ length: 8 }, () => get('127.0.0.1', app.port, '/cpu?ms=120'))
    let shed: { status: number; body: string } | undefined
    let reasonsWhenShed: readonly string[] = []
    const deadline = performance.now() + 5_000
    while (shed === undefined && performance.now() < deadline) {
      const answer = await get('127.0.0.1', app.port, '/light')
      if (answer.status === 503) {
        shed = answer
        reasonsWhenShed = app.reasons()
      }
    }
    await Promise.all(burners)
    expect(shed).toBeDefined()
    expect(JSON.parse(shed!.body)).toMatchObject({ status: 503, code: 'BW_OVERLOADED' })
    expect(reasonsWhenShed).toContain('event-loop-delay')
    // Pressure passes with the load: a quiet sample later the light route is admitted again.
    let recovered = false
    const recovery = performance.now() + 5_000
    while (!recovered && performance.now() < recovery) {
      recovered = (await get('127.0.0.1', app.port, '/light')).status === 200
      if (!recovered) await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(recovered).toBe(true)
    expect(app.reasons()).not.toContain('event-loop-delay')
  })
})
