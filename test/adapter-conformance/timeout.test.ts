// The timeout adapter contract, proved once for Express, Fastify and Koa over real sockets: one signal per
// request aborted at the deadline, on disconnect or shutdown (never when a body has been read), 503 at the
// deadline, 504 for a failed upstream budget, harmless late writes, and nothing left behind.

import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { ErrorCode, type TimeoutDecisionEvent, type TimeoutLateWriteEvent } from '@breakwater/core'
import { afterEach, describe, expect, it } from 'vitest'
import { liveCount } from '../../packages/core/src/timeout/shutdown.js'
import { breakwaterTimersDuring } from '../../packages/core/test/helpers.js'
import { FRAMEWORKS } from './apps.js'
import { rawRequest, until } from './support.js'
import { ROUTE_TIMEOUT_MS, startTimeoutApp, type TimeoutApp } from './timeout-apps.js'

describe.each(FRAMEWORKS)('%s timeout adapter', (framework) => {
  const apps: TimeoutApp[] = []
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })
  const start = async (timeoutMs = 5_000, extra = {}): Promise<TimeoutApp> => {
    const app = await startTimeoutApp(framework, { timeoutMs, ...extra })
    apps.push(app)
    return app
  }

  it('a handler waiting on the signal observes the abort at the deadline, and the client gets 503 then', async () => {
    const app = await start(150)
    const started = performance.now()
    const response = await rawRequest(`${app.url}/api/wait?ms=5000`)
    const elapsed = performance.now() - started
    expect(response.status).toBe(503)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(JSON.parse(response.body)).toEqual({
      type: 'about:blank',
      title: 'Service Unavailable',
      status: 503,
      detail: 'The request did not complete within its deadline.',
      code: ErrorCode.Timeout,
    })
    expect(elapsed).toBeGreaterThanOrEqual(149)
    expect(elapsed).toBeLessThan(150 + 250) // scheduling slack on 2 shared cores
    await until(() => app.seen.aborted.length === 1)
    expect(app.seen.aborted).toEqual(['timeout'])
    expect(app.seen.completed).toBe(0)
    expect(app.seen.errors).toEqual([]) // the handler's rejection after the 503 does not reach error handlers
  })

  it('a per-route timeout overrides the app’s, in the framework’s idiom', async () => {
    const app = await start(5_000)
    const started = performance.now()
    const response = await rawRequest(`${app.url}/api/route-timeout?ms=5000`)
    expect(response.status).toBe(503)
    expect(performance.now() - started).toBeLessThan(ROUTE_TIMEOUT_MS + 250)
    const fast = await rawRequest(`${app.url}/api/wait?ms=10`)
    expect(fast.status).toBe(200)
    expect(JSON.parse(fast.body)).toEqual({ waited: 10 })
  })

  it('publishes one decision per request: completed, timed_out', async () => {
    const events: TimeoutDecisionEvent[] = []
    const listener = (message: unknown) => events.push(message as TimeoutDecisionEvent)
    diagnostics.subscribe('breakwater:timeout:decision', listener)
    try {
      const app = await start(100)
      await rawRequest(`${app.url}/api/wait?ms=5`)
      await rawRequest(`${app.url}/api/wait?ms=5000`)
      await until(() => events.length === 2)
    } finally {
      diagnostics.unsubscribe('breakwater:timeout:decision', listener)
    }
    expect(events.map((e) => [e.policy, e.outcome, e.timeoutSeconds])).toEqual([
      ['timeout', 'completed', 0.1],
      ['timeout', 'timed_out', 0.1],
    ])
    expect(events[1]?.request?.path).toBe('/api/wait')
  })

  it('a handler failing because an upstream budget ran out is answered 504 problem+json', async () => {
    const app = await start(5_000)
    const upstream = await rawRequest(`${app.url}/api/upstream`)
    expect(upstream.status).toBe(504)
    expect(upstream.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(JSON.parse(upstream.body)).toMatchObject({
      status: 504,
      title: 'Gateway Timeout',
      code: 'BW_DEADLINE_EXCEEDED',
    })
    const budget = await rawRequest(`${app.url}/api/budget`)
    expect(budget.status).toBe(504)
    expect(JSON.parse(budget.body)).toMatchObject({ code: 'BW_DEADLINE_EXCEEDED' })
  })

  it('a client that disconnects aborts the signal', async () => {
    const app = await start(5_000)
    const request = http.get(`${app.url}/api/wait?ms=5000`, { agent: false })
    request.on('error', () => {})
    await until(() => app.seen.started === 1)
    request.destroy()
    await until(() => app.seen.aborted.length === 1)
    expect(app.seen.aborted).toEqual(['client-gone'])
  })

  it('a POST whose JSON body has been read is not aborted', async () => {
    const app = await start(5_000)
    const response = await rawRequest(`${app.url}/api/echo?ms=80`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'book', quantity: 2 }),
    })
    expect(response.status).toBe(200)
    expect(JSON.parse(response.body)).toEqual({ body: { item: 'book', quantity: 2 }, aborted: false })
  })

  it('a handler that ignores the signal and writes late does no harm, reported once', async () => {
    const late: TimeoutLateWriteEvent[] = []
    const listener = (message: unknown) => late.push(message as TimeoutLateWriteEvent)
    diagnostics.subscribe('breakwater:timeout:late-write', listener)
    const crashes: unknown[] = []
    const onCrash = (error: unknown) => crashes.push(error)
    process.on('uncaughtException', onCrash)
    process.on('unhandledRejection', onCrash)
    try {
      const app = await start(60)
      const response = await rawRequest(`${app.url}/api/ignore?ms=150`)
      expect(response.status).toBe(503)
      expect(JSON.parse(response.body)).toMatchObject({ code: ErrorCode.Timeout })
      await until(() => app.seen.lateDone === 1)
      await sleep(50)
      expect(app.seen.errors).toEqual([])
      // still serving
      expect((await rawRequest(`${app.url}/api/wait?ms=1`)).status).toBe(200)
    } finally {
      diagnostics.unsubscribe('breakwater:timeout:late-write', listener)
      process.off('uncaughtException', onCrash)
      process.off('unhandledRejection', onCrash)
    }
    expect(crashes).toEqual([])
    expect(late).toHaveLength(1)
    expect(late[0]).toMatchObject({ policy: 'timeout', outcome: 'late_write' })
    expect(late[0]?.lateSeconds).toBeGreaterThan(0.05)
  })

  it('a response already streaming at the deadline is ended by destroying the connection', async () => {
    const app = await start(80)
    const started = performance.now()
    const outcome = await new Promise<string>((resolve) => {
      http
        .get(`${app.url}/api/stream`, { agent: false }, (response) => {
          response.on('data', () => {})
          response.on('end', () => resolve('complete'))
          response.on('error', () => resolve('cut'))
          response.on('aborted', () => resolve('cut'))
        })
        .on('error', () => resolve('cut'))
    })
    expect(outcome).toBe('cut')
    expect(performance.now() - started).toBeLessThan(80 + 300)
    await until(() => app.seen.aborted.length === 1)
    expect(app.seen.aborted).toEqual(['timeout'])
  })

  it('honours a trusted caller’s deadline header, bounded by the route’s timeout; ignores it otherwise', async () => {
    const trusting = await start(5_000, { trustDeadlineHeader: true })
    const short = JSON.parse(
      (await rawRequest(`${trusting.url}/api/context`, { headers: { 'request-timeout-ms': '250' } })).body,
    )
    expect(short.timeoutMs).toBe(250)
    expect(Number(short.forward['Request-Timeout-Ms'])).toBeLessThanOrEqual(250)
    expect(short.deadline).toBeLessThanOrEqual(Date.now() + 250)
    const long = JSON.parse(
      (await rawRequest(`${trusting.url}/api/context`, { headers: { 'request-timeout-ms': '600000' } })).body,
    )
    expect(long.timeoutMs).toBe(5_000)
    const live = liveCount()
    const over = await rawRequest(`${trusting.url}/api/wait?ms=10`, { headers: { 'request-timeout-ms': '0' } })
    expect(over.status).toBe(503)
    expect(trusting.seen.started).toBe(0) // over budget on arrival: the handler never ran
    await until(() => liveCount() === live) // and its lifecycle ended with the response: nothing left registered

    const plain = await start(5_000)
    const ignored = JSON.parse(
      (await rawRequest(`${plain.url}/api/context`, { headers: { 'request-timeout-ms': '250' } })).body,
    )
    expect(ignored.timeoutMs).toBe(5_000)
  })

  it('listens to the response only once something reads the signal', async () => {
    const app = await start(5_000)
    const { before, after } = JSON.parse((await rawRequest(`${app.url}/api/listeners`)).body)
    // Each adapter reports the end of the handler itself (Express: when next() returns), so a request that never
    // looks at its signal never puts a listener on its response.
    expect(after - before).toBe(1)
  })

  it('many requests leave no timers behind', async () => {
    const app = await start(30_000)
    const timers = await breakwaterTimersDuring(async () => {
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(Array.from({ length: 25 }, () => rawRequest(`${app.url}/api/wait?ms=0`)))
      }
    })
    // Deadlines of one budget share one unref'd queue timer: nothing per request, nothing left but that timer.
    expect(timers.created).toBeLessThanOrEqual(1)
    expect(timers.live).toBeLessThanOrEqual(1)
  })
})
