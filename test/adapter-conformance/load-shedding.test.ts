// The load-shedding adapter contract, proved once for Express, Fastify and Koa over real sockets: 503
// problem+json with a jittered Retry-After past the limit, before the body is read; probes never shed; and every
// permit released exactly once — after success, thrown handlers, async failures and clients that leave.

import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import { ErrorCode, type LoadSheddingDecisionEvent, ProblemType } from '@breakwater/core'
import { afterEach, describe, expect, it } from 'vitest'
import { FRAMEWORKS } from './apps.js'
import { type SheddingApp, startSheddingApp } from './load-shedding-apps.js'
import { rawRequest, until } from './support.js'

describe.each(FRAMEWORKS)('%s load-shedding adapter', (framework) => {
  const apps: SheddingApp[] = []
  afterEach(async () => {
    for (const app of apps) app.open()
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })
  const start = async (options = {}): Promise<SheddingApp> => {
    const app = await startSheddingApp(framework, { limit: 2, ...options })
    apps.push(app)
    return app
  }

  it('admits up to the limit and sheds the rest with 503 problem+json and a jittered Retry-After', async () => {
    const app = await start({ retryAfterSeconds: [1, 9] })
    const held = [rawRequest(`${app.url}/api/hold`), rawRequest(`${app.url}/api/hold`)]
    await until(() => app.seen.started === 2)
    const shed = await Promise.all(Array.from({ length: 12 }, () => rawRequest(`${app.url}/api/hold`)))
    for (const response of shed) {
      expect(response.status).toBe(503)
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
      expect(JSON.parse(response.body)).toEqual({
        type: ProblemType.TemporaryReducedCapacity,
        title: 'Service Unavailable',
        status: 503,
        detail: 'The server is overloaded; retry later.',
        code: ErrorCode.Overloaded,
      })
    }
    const retryAfter = new Set(shed.map((response) => Number(response.headers['retry-after'])))
    expect(retryAfter.size).toBeGreaterThan(1) // jittered, not in step
    for (const seconds of retryAfter) expect(seconds).toBeGreaterThanOrEqual(1)
    expect(app.seen.started).toBe(2) // shed requests never reached a handler
    app.open()
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200])
    await until(() => app.shedder.inflight === 0)
  })

  it('releases every permit exactly once: success, thrown handler, async failure, client gone', async () => {
    const app = await start()
    expect((await rawRequest(`${app.url}/api/boom`)).status).toBe(500)
    expect((await rawRequest(`${app.url}/api/later`)).status).toBe(500)
    const gone = http.get(`${app.url}/api/hold`, { agent: false })
    gone.on('error', () => {})
    await until(() => app.seen.started === 3)
    expect(app.shedder.inflight).toBe(1)
    gone.destroy()
    await until(() => app.seen.aborted === 1)
    await until(() => app.shedder.inflight === 0)
    // No leak: the full limit is available again. No double release: the limit still holds.
    const held = [rawRequest(`${app.url}/api/hold`), rawRequest(`${app.url}/api/hold`)]
    await until(() => app.shedder.inflight === 2)
    expect((await rawRequest(`${app.url}/api/hold`)).status).toBe(503)
    app.open()
    expect((await Promise.all(held)).map((r) => r.status)).toEqual([200, 200])
    await until(() => app.shedder.inflight === 0)
    expect(app.shedder.inflight).toBe(0)
  })

  it('never sheds an excluded health probe, which reports the overload state', async () => {
    const app = await start({ limit: 1 })
    const held = rawRequest(`${app.url}/api/hold`)
    await until(() => app.seen.started === 1)
    expect((await rawRequest(`${app.url}/api/hold`)).status).toBe(503)
    const probe = await rawRequest(`${app.url}/readyz`)
    expect(probe.status).toBe(200)
    expect(JSON.parse(probe.body)).toEqual({ overloaded: true, reasons: ['concurrency'], limit: 1, inflight: 1 })
    app.open()
    await held
  })

  it('sheds before the request body is read', async () => {
    const app = await start({ limit: 1 })
    const held = rawRequest(`${app.url}/api/hold`)
    await until(() => app.seen.started === 1)
    // Announce a large body and send none of it: only an answer that does not wait for the body arrives.
    const status = await new Promise<number>((resolve, reject) => {
      const request = http.request(`${app.url}/api/echo`, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': '100000' },
      })
      request.on('response', (response) => {
        response.resume()
        resolve(response.statusCode ?? 0)
        request.destroy()
      })
      request.on('error', reject)
      request.flushHeaders()
    })
    expect(status).toBe(503)
    app.open()
    await held
  })

  it('queues a request over the limit and runs it when a permit frees up', async () => {
    const app = await start({ limit: 1, queue: { size: 5, intervalMs: 5_000 } })
    const first = rawRequest(`${app.url}/api/hold`)
    await until(() => app.seen.started === 1)
    const second = rawRequest(`${app.url}/api/hold`)
    await until(() => app.shedder.queued === 1)
    expect(app.seen.started).toBe(1)
    app.open()
    await until(() => app.seen.started === 2)
    app.open()
    expect((await Promise.all([first, second])).map((r) => r.status)).toEqual([200, 200])
    await until(() => app.shedder.inflight === 0)
  })

  it('drops a queued request whose client leaves, without running it or taking a permit', async () => {
    const events: LoadSheddingDecisionEvent[] = []
    const listener = (message: unknown) => events.push(message as LoadSheddingDecisionEvent)
    diagnostics.subscribe('breakwater:load-shedding:decision', listener)
    try {
      const app = await start({ limit: 1, queue: { size: 5, intervalMs: 5_000 } })
      const first = rawRequest(`${app.url}/api/hold`)
      await until(() => app.seen.started === 1)
      const leaving = http.get(`${app.url}/api/hold`, { agent: false })
      leaving.on('error', () => {})
      await until(() => app.shedder.queued === 1)
      leaving.destroy()
      await until(() => app.shedder.queued === 0)
      app.open()
      expect((await first).status).toBe(200)
      await until(() => app.shedder.inflight === 0)
      expect(app.seen.started).toBe(1)
      expect(events.map((e) => e.outcome)).toEqual(['admitted', 'queued', 'abandoned'])
      expect(events[0]?.request?.path).toBe('/api/hold')
    } finally {
      diagnostics.unsubscribe('breakwater:load-shedding:decision', listener)
    }
  })
})
