// Hedging against a real loopback upstream over real sockets: 10 % of first attempts take 1 s; a hedge after
// 150 ms cuts the caller's tail, adds at most the budget's load, and the losers' connections are closed.

import { performance } from 'node:perf_hooks'
import { dependency } from '@breakwater/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { until } from '../adapter-conformance/support.js'
import { startUpstream, type Upstream } from './upstream.js'

let upstream: Upstream
beforeEach(async () => {
  upstream = await startUpstream()
  await (await fetch(`${upstream.url}/warm-up`)).text()
})
afterEach(async () => {
  await upstream.close()
})

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] as number
}

describe('hedging over real sockets', () => {
  it('10 % of answers take 1 s: with a 150 ms hedge the caller’s p99 is near the upstream’s p95 + 150 ms', async () => {
    const calls = 200
    const delayMs = 150 // above the fast answers' p95 on 2 loaded shared cores, far below the slow 1 s
    const ratio = 0.2
    const perSecond = 10
    const recommendations = dependency('recommendations', {
      bulkhead: { limit: 40 },
      hedge: { delayMs, budget: { ratio, perSecond } },
    })
    const latencies: number[] = []
    let next = 0
    const started = performance.now()
    await Promise.all(
      Array.from({ length: 5 }, async () => {
        while (next < calls) {
          const i = next++
          const t0 = performance.now()
          const text = await recommendations.execute(({ signal, attempt }) =>
            fetch(`${upstream.url}/tail?i=${i}&attempt=${attempt}`, { signal }).then((r) => r.text()),
          )
          latencies.push(performance.now() - t0)
          expect(text).toBe('tail')
        }
      }),
    )
    const seconds = (performance.now() - started) / 1000
    const slow = calls / 10
    // Every slow first attempt lost to its hedge, and its connection was closed (observed by the upstream).
    await until(() => upstream.closedEarly.length >= slow, 3_000)
    expect(upstream.closedEarly.filter((path) => path === '/tail')).toHaveLength(slow)
    expect(upstream.tailLatencies.filter((ms) => ms >= 900)).toEqual([]) // no 1 s answer was ever completed
    const upstreamP95 = percentile(upstream.tailLatencies, 0.95)
    const callerP99 = percentile(latencies, 0.99)
    expect(callerP99).toBeLessThan(upstreamP95 + delayMs + 300) // slack for 2 shared, loaded cores
    expect(callerP99).toBeLessThan(700) // unhedged, it would be the 1 s of the slow answers
    // Extra load: the hedges, within the budget.
    const extra = (upstream.calls.get('/tail') ?? 0) - calls
    expect(extra).toBeGreaterThanOrEqual(slow)
    expect(extra).toBeLessThanOrEqual(calls * ratio + perSecond * (Math.ceil(seconds) + 1))
  })

  it('without a hedge the same upstream gives the caller a 1 s tail (the baseline)', async () => {
    const plain = dependency('plain', { bulkhead: { limit: 40 } })
    const latencies = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const t0 = performance.now()
        await plain.execute(({ signal }) =>
          fetch(`${upstream.url}/tail?i=${i}&attempt=1`, { signal }).then((r) => r.text()),
        )
        return performance.now() - t0
      }),
    )
    expect(percentile(latencies, 0.99)).toBeGreaterThanOrEqual(990)
  })
})
