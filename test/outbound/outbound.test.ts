// The outbound policies against a real loopback upstream over real sockets: cancellation that really cancels,
// bulkheads that isolate dependencies from each other, and an open breaker that costs nothing and calls nobody.

import { performance } from 'node:perf_hooks'
import { dependency, isAttemptTimeoutError, isBulkheadFullError, isCircuitOpenError } from '@breakwater/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { until } from '../adapter-conformance/support.js'
import { startUpstream, type Upstream } from './upstream.js'

let upstream: Upstream
beforeEach(async () => {
  upstream = await startUpstream()
  // The first fetch() of a process loads undici (tens of ms, more on a busy machine): not part of any timing here.
  await (await fetch(`${upstream.url}/warm-up`)).text()
})
afterEach(async () => {
  await upstream.close()
})

const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

describe('outbound policies over real sockets', () => {
  it('a 2 s upstream under a 100 ms attempt timeout is cut at 100 ms and sees its connection closed', async () => {
    const slow = dependency('slow', { attemptTimeoutMs: 100 })
    const started = performance.now()
    const error = await settle(slow.execute(({ signal }) => fetch(`${upstream.url}/slow?ms=2000`, { signal })))
    const elapsed = performance.now() - started
    expect(isAttemptTimeoutError(error)).toBe(true)
    expect(elapsed).toBeGreaterThanOrEqual(99)
    expect(elapsed).toBeLessThan(100 + 250) // scheduling slack on 2 shared cores
    await until(() => upstream.closedEarly.length === 1, 2_000)
    expect(upstream.closedEarly).toEqual(['/slow'])
  })

  it('a slow dependency fills only its own bulkhead while another dependency’s calls stay fast', async () => {
    const reports = dependency('reports', { bulkhead: { limit: 4 }, attemptTimeoutMs: 10_000 })
    const search = dependency('search', { bulkhead: { limit: 4 }, attemptTimeoutMs: 5_000 })
    const slowCalls = Array.from({ length: 10 }, () =>
      settle(reports.execute(({ signal }) => fetch(`${upstream.url}/slow?ms=5000`, { signal }).then((r) => r.text()))),
    )
    expect(reports.bulkhead?.inFlight).toBe(4)
    const fastLatencies: number[] = []
    for (let i = 0; i < 20; i++) {
      const started = performance.now()
      const text = await search.execute(({ signal }) => fetch(`${upstream.url}/fast`, { signal }).then((r) => r.text()))
      fastLatencies.push(performance.now() - started)
      expect(text).toBe('fast')
    }
    expect(reports.bulkhead?.inFlight).toBe(4) // still held by the slow dependency
    expect(Math.max(...fastLatencies)).toBeLessThan(1_000) // never waited for the slow one's 5 s
    const results = await Promise.all(slowCalls)
    expect(results.filter((r) => r === 'slow')).toHaveLength(4)
    expect(results.filter(isBulkheadFullError)).toHaveLength(6)
    expect(upstream.calls.get('/slow')).toBe(4) // the six rejected never reached the upstream
  })

  it('an open breaker answers in under a millisecond and the upstream sees no call until the probe', async () => {
    const flaky = dependency('flaky', {
      breaker: { consecutiveFailures: 3, openMs: 300 },
      attemptTimeoutMs: 1_000,
    })
    const call = () =>
      flaky.execute(({ signal }) =>
        fetch(`${upstream.url}/flaky`, { signal }).then((r) =>
          r.status === 500 ? Promise.reject(new Error('500')) : r.text(),
        ),
      )
    for (let i = 0; i < 3; i++) await settle(call())
    expect(flaky.breaker?.state).toBe('open')
    expect(upstream.calls.get('/flaky')).toBe(3)
    const rounds = 200
    const started = performance.now()
    for (let i = 0; i < rounds; i++) {
      const error = await settle(call())
      expect(isCircuitOpenError(error)).toBe(true)
    }
    const perCall = (performance.now() - started) / rounds
    expect(perCall).toBeLessThan(1)
    expect(upstream.calls.get('/flaky')).toBe(3)
    upstream.flakyStatus = 200
    await until(() => flaky.breaker?.state === 'half_open', 1_000)
    expect(await call()).toBe('flaky') // the probe, the first call to reach the upstream since it opened
    expect(upstream.calls.get('/flaky')).toBe(4)
    expect(flaky.breaker?.state).toBe('closed')
  })
})
