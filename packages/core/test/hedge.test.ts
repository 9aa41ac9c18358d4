// Hedging: when a hedge is sent (after the delay, at once after a retryable failure, never before the percentile
// has its samples, never while the breaker is not closed, never without budget or for non-idempotent work), that
// the first acceptable answer wins, and that losers are aborted and their late results discarded.

import { describe, expect, it } from 'vitest'
import { LatencyQuantile } from '../src/hedge/latency-quantile.js'
import { createHedge, dependency, RetryBudget } from '../src/index.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** Work that answers `value` after `ms`, or rejects with its signal's reason when aborted first. */
function answerAfter<T>(ms: number, value: T, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(value), ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(signal.reason)
    })
  })
}

describe('hedge', () => {
  it('sends a hedge after the delay; the first answer wins and the loser is aborted', async () => {
    const hedge = createHedge({ name: 'h', delayMs: 20, budget: false })
    const signals: AbortSignal[] = []
    const started = performance.now()
    const value = await hedge.execute(({ attempt, signal }) => {
      signals.push(signal)
      return answerAfter(attempt === 1 ? 1000 : 5, `attempt ${attempt}`, signal)
    })
    expect(value).toBe('attempt 2')
    expect(performance.now() - started).toBeLessThan(500)
    expect(signals).toHaveLength(2)
    expect(signals[0]?.aborted).toBe(true) // the loser was told to stop
    expect(signals[1]?.aborted).toBe(false)
  })

  it('a loser that answers anyway has its result discarded', async () => {
    const discarded: unknown[] = []
    const hedge = createHedge({ name: 'h', delayMs: 10, budget: false, discard: (r) => discarded.push(r) })
    const value = await hedge.execute(({ attempt }) => sleep(attempt === 1 ? 60 : 1).then(() => `attempt ${attempt}`))
    expect(value).toBe('attempt 2')
    await sleep(100)
    expect(discarded).toEqual(['attempt 1']) // ignored its signal, answered late: freed, not returned
  })

  it('a retryable failure of the first attempt launches the hedge at once, not after the delay', async () => {
    const hedge = createHedge({ name: 'h', delayMs: 5000, budget: false })
    const started = performance.now()
    const value = await hedge.execute(({ attempt }) =>
      attempt === 1 ? Promise.reject(Object.assign(new Error('reset'), { code: 'ECONNRESET' })) : 'second',
    )
    expect(value).toBe('second')
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('no hedge for non-idempotent work, and none without budget', async () => {
    const hedge = createHedge({ name: 'h', delayMs: 5, budget: new RetryBudget({ ratio: 0, perSecond: 1 }) })
    let attempts = 0
    const work = ({ signal }: { signal: AbortSignal }) => {
      attempts++
      return answerAfter(40, 'ok', signal)
    }
    await hedge.execute(work, { idempotent: false })
    expect(attempts).toBe(1)
    attempts = 0
    await hedge.execute(work) // spends the one token
    expect(attempts).toBe(2)
    attempts = 0
    await hedge.execute(work) // budget spent
    expect(attempts).toBe(1)
  })

  it('no hedge while the breaker is half-open', async () => {
    const d = dependency('d', { breaker: { consecutiveFailures: 1, openMs: 20 }, hedge: { delayMs: 5, budget: false } })
    await d.execute(() => Promise.reject(new Error('down'))).catch(() => {})
    expect(d.breaker?.state).toBe('open')
    await sleep(30)
    let attempts = 0
    const value = await d.execute(({ signal }) => {
      attempts++
      return answerAfter(40, 'probe', signal)
    })
    expect(value).toBe('probe')
    expect(attempts).toBe(1) // the probe alone
    expect(d.breaker?.state).toBe('closed')
  })

  it('hedges count in the bulkhead: a refused hedge leaves the first attempt to answer', async () => {
    const d = dependency('d', { bulkhead: { limit: 1 }, hedge: { delayMs: 5, budget: false } })
    let attempts = 0
    const value = await d.execute(({ signal }) => {
      attempts++
      return answerAfter(40, 'first', signal)
    })
    expect(value).toBe('first')
    expect(attempts).toBe(1)
    expect(d.bulkhead?.inFlight).toBe(0)
  })

  it('percentile delay: no hedge before minSamples, then one at about the p95 of recent latencies', async () => {
    const hedge = createHedge({ name: 'h', delayMs: { percentile: 0.95, minSamples: 10 }, budget: false })
    let attempts = 0
    const slowFirst = ({ attempt, signal }: { attempt: number; signal: AbortSignal }) => {
      attempts++
      return answerAfter(attempt === 1 ? 300 : 1, attempt, signal)
    }
    expect(await hedge.execute(slowFirst)).toBe(1) // no samples yet: no hedge, the slow answer
    expect(attempts).toBe(1)
    // 30 fast samples: the one slow sample falls above the p95.
    for (let i = 0; i < 30; i++) await hedge.execute(({ signal }) => answerAfter(10, 0, signal))
    attempts = 0
    const started = performance.now()
    expect(await hedge.execute(slowFirst)).toBe(2)
    expect(attempts).toBe(2)
    expect(performance.now() - started).toBeLessThan(250)
  })
})

describe('latency quantile', () => {
  it('estimates a percentile within its 20 % bucket width, in fixed memory, following recent samples', () => {
    const q = new LatencyQuantile(0.95, 1000)
    for (let i = 1; i <= 1000; i++) q.record(i) // 1 … 1000 ms: p95 = 950
    expect(q.value()).toBeGreaterThanOrEqual(950)
    expect(q.value()).toBeLessThanOrEqual(950 * 1.2)
    for (let i = 0; i < 2000; i++) q.record(5) // two generations later only the 5 ms samples count
    expect(q.value()).toBeGreaterThanOrEqual(5)
    expect(q.value()).toBeLessThanOrEqual(6)
    expect(q.count).toBe(2000)
  })
})
