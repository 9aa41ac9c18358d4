// @breakwater/undici inside a real Express app behind the timeout policy (the request's deadline bounds the
// upstream call and travels as Request-Timeout-Ms), and request bodies of every kind arriving intact.

import { AsyncLocalStorage } from 'node:async_hooks'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { dependency, type RequestLifecycle } from '@breakwater/core'
import { errorHandler, timeout } from '@breakwater/express'
import { breakwater } from '@breakwater/undici'
import express from 'express'
import { Agent, request, fetch as undiciFetch } from 'undici'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { until } from '../adapter-conformance/support.js'
import { type ScriptedUpstream, startScriptedUpstream } from './scripted-upstream.js'

let upstream: ScriptedUpstream
let agent: Agent
beforeEach(async () => {
  upstream = await startScriptedUpstream()
  agent = new Agent()
})
afterEach(async () => {
  await agent.close()
  await upstream.close()
})

describe('inside an Express request with a Breakwater timeout', () => {
  it('bounds the upstream call by the request’s deadline and forwards the remaining budget', async () => {
    const requests = new AsyncLocalStorage<RequestLifecycle>()
    const dispatcher = agent.compose(
      breakwater({
        dependencies: { [upstream.origin]: dependency('express-context', { attemptTimeoutMs: 10_000 }) },
        context: () => requests.getStore(),
      }),
    )
    const app = express()
    app.use(timeout({ timeoutMs: 400 }))
    app.use((req, _res, next) => requests.run(req.breakwater, next))
    app.get('/stock', async (_req, res, next) => {
      try {
        const answer = await undiciFetch(`${upstream.origin}/inventory`, { dispatcher })
        res.status(answer.status).send(await answer.text())
      } catch (error) {
        next((error as Error).cause ?? error)
      }
    })
    app.use(errorHandler())
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    try {
      const fast = await fetch(`${base}/stock`)
      expect(fast.status).toBe(200)
      const budget = Number(upstream.received[0]?.headers['request-timeout-ms'])
      expect(budget).toBeGreaterThan(0)
      expect(budget).toBeLessThanOrEqual(400)

      upstream.fallback = { status: 200, delayMs: 5_000 }
      const started = performance.now()
      const slow = await fetch(`${base}/stock`)
      expect([503, 504]).toContain(slow.status) // the request's deadline: the timeout's 503 or the call's 504
      expect(performance.now() - started).toBeLessThan(2_500)
      await until(() => upstream.closedEarly.length === 1, 3_000) // the upstream call was cancelled with it
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('request bodies', () => {
  it('arrive intact: fetch’s JSON body (held for replay), a Node stream and a web stream (sent once)', async () => {
    const dispatcher = agent.compose(
      breakwater({ dependencies: { [upstream.origin]: dependency('bodies', { attemptTimeoutMs: 5_000 }) } }),
    )
    const json = JSON.stringify({ sku: 'a-1', qty: 3 })
    await (
      await undiciFetch(`${upstream.origin}/json`, {
        dispatcher,
        method: 'POST',
        body: json,
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k-1' },
      })
    ).text()
    await (
      await request(`${upstream.origin}/node-stream`, {
        dispatcher,
        method: 'POST',
        body: Readable.from([Buffer.from('part one, '), Buffer.from('part two')]),
      })
    ).body.text()
    const web = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('web '))
        controller.enqueue(new TextEncoder().encode('stream'))
        controller.close()
      },
    })
    await (
      await undiciFetch(`${upstream.origin}/web-stream`, { dispatcher, method: 'PUT', body: web, duplex: 'half' })
    ).text()
    expect(upstream.received.map((r) => [r.path, r.body])).toEqual([
      ['/json', json],
      ['/node-stream', 'part one, part two'],
      ['/web-stream', 'web stream'],
    ])
    expect(upstream.received[0]?.headers['idempotency-key']).toBe('k-1')
  })

  it('a large response body streams through with backpressure, byte for byte', async () => {
    const big = 'x'.repeat(3 * 1024 * 1024)
    upstream.fallback = { status: 200, body: big }
    const dispatcher = agent.compose(
      breakwater({ dependencies: { [upstream.origin]: dependency('big-body', { attemptTimeoutMs: 5_000 }) } }),
    )
    const res = await undiciFetch(`${upstream.origin}/big`, { dispatcher })
    expect((await res.text()).length).toBe(big.length)
    const viaRequest = await request(`${upstream.origin}/big`, { dispatcher })
    let received = 0
    for await (const chunk of viaRequest.body) {
      received += (chunk as Buffer).length
      await new Promise((resolve) => setImmediate(resolve)) // a slow reader: undici must pause and resume
    }
    expect(received).toBe(big.length)
  })
})
