// The bulkhead: a limit in flight, a bounded FIFO queue with a wait timeout, queued callers that leave at once,
// and the adaptive limit (the load shedder's algorithms) fed by the calls' latencies.

import diagnostics from 'node:diagnostics_channel'
import { describe, expect, it } from 'vitest'
import { type BulkheadLimitEvent, createBulkhead, dependency, isBulkheadFullError } from '../src/index.js'

function gate(): { promise: Promise<string>; open: () => void } {
  let open: () => void = () => {}
  const promise = new Promise<string>((resolve) => (open = () => resolve('done')))
  return { promise, open }
}
const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

describe('bulkhead', () => {
  it('runs at most `limit` calls, queues the next ones in FIFO order, and rejects beyond the queue', async () => {
    const bulkhead = createBulkhead({ name: 'b', limit: 2, queue: 2, retryAfterSeconds: 3 })
    const gates = Array.from({ length: 4 }, gate)
    const order: number[] = []
    const calls = gates.map((g, i) =>
      bulkhead.execute(() => {
        order.push(i)
        return g.promise
      }),
    )
    expect(order).toEqual([0, 1])
    expect([bulkhead.inFlight, bulkhead.queued]).toEqual([2, 2])
    const rejected = await settle(bulkhead.execute(() => 'never'))
    expect(isBulkheadFullError(rejected)).toBe(true)
    expect(rejected).toMatchObject({ code: 'BW_BULKHEAD_FULL', status: 503, retryAfterSeconds: 3, reason: 'full' })
    gates[1]?.open()
    await calls[1]
    expect(order).toEqual([0, 1, 2])
    gates[0]?.open()
    await calls[0]
    expect(order).toEqual([0, 1, 2, 3])
    for (const g of gates) g.open()
    await Promise.all(calls)
    expect([bulkhead.inFlight, bulkhead.queued]).toEqual([0, 0])
  })

  it('a queued call waits at most queueTimeoutMs, then fails with reason queue_timeout', async () => {
    const bulkhead = createBulkhead({ limit: 1, queue: 1, queueTimeoutMs: 30 })
    const held = gate()
    const running = bulkhead.execute(() => held.promise)
    const started = performance.now()
    const error = await settle(bulkhead.execute(() => 'late'))
    expect(performance.now() - started).toBeGreaterThanOrEqual(29)
    expect(error).toMatchObject({ code: 'BW_BULKHEAD_FULL', reason: 'queue_timeout' })
    expect(bulkhead.queued).toBe(0)
    held.open()
    await running
  })

  it('a queued caller that aborts leaves at once and frees nothing it did not hold (cockatiel #112)', async () => {
    const bulkhead = createBulkhead({ limit: 1, queue: 2, queueTimeoutMs: 10_000 })
    const held = gate()
    const running = bulkhead.execute(() => held.promise)
    const leaving = new AbortController()
    let leftRan = false
    const left = settle(bulkhead.execute(() => (leftRan = true), { signal: leaving.signal }))
    const next = bulkhead.execute(() => 'next')
    leaving.abort(new Error('caller gone'))
    expect(await left).toMatchObject({ message: 'caller gone' })
    expect(leftRan).toBe(false)
    // Still one in flight (the abort freed no slot it never had), one waiting.
    expect([bulkhead.inFlight, bulkhead.queued]).toEqual([1, 1])
    held.open()
    expect(await next).toBe('next')
    await running
    expect([bulkhead.inFlight, bulkhead.queued]).toEqual([0, 0])
  })

  it('in adaptive mode, calls that time out shrink the limit (AIMD) and each change is published', async () => {
    const limits: BulkheadLimitEvent[] = []
    const onLimit = (m: unknown): void => {
      limits.push(m as BulkheadLimitEvent)
    }
    diagnostics.subscribe('breakwater:bulkhead:limit', onLimit)
    try {
      const dep = dependency('adaptive', {
        breaker: false,
        bulkhead: { limit: { algorithm: 'aimd', initialLimit: 10, windowMs: 1, windowSamples: 1 } },
        attemptTimeoutMs: 5,
      })
      for (let i = 0; i < 3; i++) {
        await settle(dep.execute(() => new Promise(() => {})))
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
      expect(dep.bulkhead?.limit).toBeLessThan(10)
      expect(limits.length).toBeGreaterThan(0)
      expect(limits[0]).toMatchObject({ policy: 'adaptive', limit: 9, inFlight: 0, queued: 0 })
    } finally {
      diagnostics.unsubscribe('breakwater:bulkhead:limit', onLimit)
    }
  })

  it('rejects unknown and invalid options naming the key', () => {
    expect(() => createBulkhead({ size: 3 } as never)).toThrow(/"size"/)
    expect(() => createBulkhead({ queue: -1 })).toThrow(/"queue"/)
    expect(() => createBulkhead({ limit: 'fast' as never })).toThrow(/"limit/)
  })
})
