// @breakwater/undici with a dependency that retries and hedges, against a real loopback upstream: Retry-After
// honoured and the retried answer read to its end, only idempotent requests retried (Idempotency-Key kept),
// one-shot bodies sent once, a losing hedge's socket closed at the upstream.

import { Readable } from 'node:stream'
import { dependency } from '@breakwater/core'
import { breakwater } from '@breakwater/undici'
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

/** A dispatcher whose dependency retries at once (1 ms backoff), without a budget to run out of. */
function retrying(name: string, attempts = 3) {
  const guarded = dependency(name, {
    breaker: false,
    retry: { attempts, baseMs: 1, capMs: 1, budget: false },
    attemptTimeoutMs: 5_000,
  })
  return agent.compose(breakwater({ dependencies: { [upstream.origin]: guarded } }))
}

describe('retries through the interceptor', () => {
  it('honours Retry-After and hands only the accepted answer on; the 503 is read to its end, not aborted', async () => {
    upstream.script = [{ status: 503, headers: { 'retry-after': '1' }, body: 'busy' }]
    const dispatcher = retrying('retry-after')
    const res = await undiciFetch(`${upstream.origin}/stock`, { dispatcher })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('ok')
    const [first, second] = upstream.received
    expect(upstream.received).toHaveLength(2)
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(950) // 1 s asked; 1 ms backoff otherwise
    // The 503's small body was read to its end, not cut off: no connection closed early.
    expect(upstream.closedEarly).toEqual([])
  })

  it('retries through undici request too, and returns the last answer when every attempt fails', async () => {
    upstream.fallback = { status: 502, body: 'bad gateway' }
    const res = await request(`${upstream.origin}/stock`, { dispatcher: retrying('exhausted', 3) })
    expect(res.statusCode).toBe(502)
    expect(await res.body.text()).toBe('bad gateway')
    expect(upstream.received).toHaveLength(3)
  })

  it('never retries a 4xx other than 429 with Retry-After', async () => {
    upstream.script = [{ status: 400 }]
    const res = await undiciFetch(`${upstream.origin}/stock`, { dispatcher: retrying('no-4xx') })
    expect(res.status).toBe(400)
    await res.text()
    expect(upstream.received).toHaveLength(1)
  })

  it('does not retry a POST without Idempotency-Key; retries one with it, sending the same key and body', async () => {
    const dispatcher = retrying('post')
    upstream.script = [{ status: 503 }]
    const plain = await undiciFetch(`${upstream.origin}/orders`, { dispatcher, method: 'POST', body: '{"n":1}' })
    expect(plain.status).toBe(503)
    await plain.text()
    expect(upstream.received).toHaveLength(1)

    upstream.script = [{ status: 503 }, { status: 503 }]
    const keyed = await undiciFetch(`${upstream.origin}/orders`, {
      dispatcher,
      method: 'POST',
      body: '{"n":2}',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'order-2' },
    })
    expect(keyed.status).toBe(200)
    await keyed.text()
    const attempts = upstream.received.slice(1)
    expect(attempts).toHaveLength(3)
    expect(attempts.map((r) => r.headers['idempotency-key'])).toEqual(['order-2', 'order-2', 'order-2'])
    expect(attempts.map((r) => r.body)).toEqual(['{"n":2}', '{"n":2}', '{"n":2}'])
  })

  it('sends a stream body once, even on an idempotent method or with an Idempotency-Key', async () => {
    const dispatcher = retrying('stream-body')
    upstream.script = [{ status: 503 }]
    const viaRequest = await request(`${upstream.origin}/upload`, {
      dispatcher,
      method: 'POST',
      headers: { 'idempotency-key': 'upload-1' },
      body: Readable.from([Buffer.from('streamed')]),
    })
    expect(viaRequest.statusCode).toBe(503)
    await viaRequest.body.text()

    upstream.script = [{ status: 503 }]
    const web = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('web'))
        controller.close()
      },
    })
    const viaFetch = await undiciFetch(`${upstream.origin}/put`, {
      dispatcher,
      method: 'PUT',
      body: web,
      duplex: 'half',
    })
    expect(viaFetch.status).toBe(503)
    await viaFetch.text()
    expect(upstream.received.map((r) => [r.path, r.body])).toEqual([
      ['/upload', 'streamed'],
      ['/put', 'web'],
    ])
  })
})

describe('hedging through the interceptor', () => {
  it('answers from the hedge and closes the slow attempt’s socket, seen at the upstream', async () => {
    upstream.script = [
      { status: 200, delayMs: 5_000, body: 'slow' },
      { status: 200, body: 'fast' },
    ]
    const hedged = dependency('hedged', {
      breaker: false,
      hedge: { delayMs: 100, budget: false },
      attemptTimeoutMs: 10_000,
    })
    const dispatcher = agent.compose(breakwater({ dependencies: { [upstream.origin]: hedged } }))
    const started = performance.now()
    const res = await undiciFetch(`${upstream.origin}/search`, { dispatcher })
    expect(await res.text()).toBe('fast')
    expect(performance.now() - started).toBeLessThan(3_000)
    await until(() => upstream.closedEarly.length === 1, 3_000)
    expect(upstream.closedEarly).toEqual(['/search'])
    expect(upstream.received).toHaveLength(2)
  })
})
