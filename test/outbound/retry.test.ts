// Retries against a real loopback upstream over real sockets: the retry budget bounds the load a total outage
// sees (counted at the upstream), and a POST's Idempotency-Key is the same on every attempt.

import { performance } from 'node:perf_hooks'
import { dependency } from '@breakwater/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startUpstream, type Upstream } from './upstream.js'

let upstream: Upstream
beforeEach(async () => {
  upstream = await startUpstream()
  await (await fetch(`${upstream.url}/warm-up`)).text()
})
afterEach(async () => {
  await upstream.close()
})

/** `calls` calls, `parallel` at a time, each reading its answer's status. */
async function callMany(
  call: () => Promise<Response>,
  calls: number,
  parallel: number,
): Promise<{ statuses: number[]; seconds: number }> {
  const statuses: number[] = []
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < calls) {
        next++
        const response = await call()
        await response.arrayBuffer()
        statuses.push(response.status)
      }
    }),
  )
  return { statuses, seconds: (performance.now() - started) / 1000 }
}

describe('retry over real sockets', () => {
  it('1,000 calls to an upstream that always answers 503 reach it at most 1,000 × 1.2 + 10/s × seconds times', async () => {
    upstream.flakyStatus = 503
    const ratio = 0.2
    const perSecond = 10
    const inventory = dependency('inventory', {
      breaker: false, // the budget alone bounds the load here
      bulkhead: { limit: 50 },
      retry: { attempts: 3, baseMs: 1, capMs: 5, budget: { ratio, perSecond } },
    })
    const { statuses, seconds } = await callMany(
      () => inventory.execute(({ signal }) => fetch(`${upstream.url}/flaky`, { signal })),
      1000,
      20,
    )
    expect(statuses).toHaveLength(1000)
    expect(statuses.every((s) => s === 503)).toBe(true) // the last 503 is the answer, not an error
    const reached = upstream.calls.get('/flaky') ?? 0
    // The floor's bucket starts full: one second's worth on top of perSecond × the elapsed seconds.
    const bound = 1000 * (1 + ratio) + perSecond * (Math.ceil(seconds) + 1)
    expect(reached).toBeGreaterThan(1000) // it did retry…
    expect(reached).toBeLessThanOrEqual(bound) // …within the budget
    expect(upstream.closedEarly).toEqual([]) // every discarded 503 body was cancelled cleanly, not cut mid-answer
  })

  it('the same calls without a budget reach it three times each (the naive amplification)', async () => {
    upstream.flakyStatus = 503
    const naive = dependency('naive', {
      breaker: false,
      retry: { attempts: 3, baseMs: 1, capMs: 5, budget: false },
    })
    await callMany(() => naive.execute(({ signal }) => fetch(`${upstream.url}/flaky`, { signal })), 200, 20)
    expect(upstream.calls.get('/flaky')).toBe(600)
  })

  it('a POST with an Idempotency-Key is retried on 503 with the same key on every attempt', async () => {
    upstream.orderStatuses = [503, 503]
    const orders = dependency('orders', { retry: { attempts: 3, baseMs: 1, capMs: 5 } })
    const key = crypto.randomUUID() // once per call, outside the work: every attempt sends this one
    const response = await orders.execute(
      ({ signal }) =>
        fetch(`${upstream.url}/orders`, {
          method: 'POST',
          signal,
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ sku: 'a', qty: 1 }),
        }),
      { idempotent: true },
    )
    expect(response.status).toBe(201)
    expect(await response.json()).toEqual({ status: 201, body: '{"sku":"a","qty":1}' })
    expect(upstream.idempotencyKeys).toEqual([key, key, key])
  })

  it('a POST without one is non-idempotent: one attempt, the 503 is the answer', async () => {
    upstream.orderStatuses = [503, 503]
    const orders = dependency('orders', { retry: { attempts: 3, baseMs: 1, capMs: 5 } })
    const response = await orders.execute(
      ({ signal }) => fetch(`${upstream.url}/orders`, { method: 'POST', signal, body: '{}' }),
      { idempotent: false },
    )
    expect(response.status).toBe(503)
    await response.arrayBuffer()
    expect(upstream.idempotencyKeys).toHaveLength(1)
  })
})
