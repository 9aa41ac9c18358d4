// The circuit breaker's state machine on an injected clock: every trigger and transition, classification,
// manual control, snapshots and the shared store; and, with fast-check, exactly `halfOpenProbes` probes.

import diagnostics from 'node:diagnostics_channel'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import {
  AttemptTimeoutError,
  BulkheadFullError,
  type CircuitBreakerStateEvent,
  createBulkhead,
  createCircuitBreaker,
  DeadlineExceededError,
  isCircuitOpenError,
  MemoryBreakerStateStore,
  RequestAbortedError,
} from '../src/index.js'
import { manualClock } from './helpers.js'

const ok = (): Promise<string> => Promise.resolve('ok')
const boom = (): Promise<never> => Promise.reject(new Error('boom'))
const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

const transitions: CircuitBreakerStateEvent[] = []
const onState = (message: unknown): void => {
  transitions.push(message as CircuitBreakerStateEvent)
}
afterEach(() => {
  diagnostics.unsubscribe('breakwater:circuit-breaker:state', onState)
  transitions.length = 0
})

describe('circuit breaker triggers', () => {
  it('opens after the configured consecutive failures, and a success in between starts the count again', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ name: 'c', consecutiveFailures: 3, clock: clock.now })
    await settle(breaker.execute(boom))
    await settle(breaker.execute(boom))
    await settle(breaker.execute(ok))
    await settle(breaker.execute(boom))
    await settle(breaker.execute(boom))
    expect(breaker.state).toBe('closed')
    diagnostics.subscribe('breakwater:circuit-breaker:state', onState)
    await settle(breaker.execute(boom))
    expect(breaker.state).toBe('open')
    expect(transitions).toEqual([{ policy: 'c', from: 'closed', to: 'open', reason: 'consecutive_failures' }])
    let ran = false
    const error = await settle(breaker.execute(() => (ran = true)))
    expect(ran).toBe(false)
    expect(isCircuitOpenError(error)).toBe(true)
    expect(error).toMatchObject({ code: 'BW_CIRCUIT_OPEN', status: 503, retryAfterSeconds: 5, state: 'open' })
  })

  it('opens on the failure ratio over the sliding window once the minimum number of calls is reached', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({
      consecutiveFailures: false,
      failureRatio: 0.5,
      minimumCalls: 10,
      windowMs: 10_000,
      windowBuckets: 10,
      clock: clock.now,
    })
    // 4 failures among 9 calls: under the minimum, then under the ratio.
    for (let i = 0; i < 5; i++) await settle(breaker.execute(ok))
    for (let i = 0; i < 4; i++) await settle(breaker.execute(boom))
    expect(breaker.state).toBe('closed')
    await settle(breaker.execute(boom)) // 5 of 10
    expect(breaker.state).toBe('open')
  })

  it('forgets calls that slid out of the window', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({
      consecutiveFailures: false,
      failureRatio: 0.5,
      minimumCalls: 4,
      windowMs: 1000,
      windowBuckets: 4,
      clock: clock.now,
    })
    await settle(breaker.execute(boom))
    await settle(breaker.execute(boom))
    await settle(breaker.execute(boom))
    clock.advance(1500) // the three failures are gone
    await settle(breaker.execute(ok))
    await settle(breaker.execute(ok))
    await settle(breaker.execute(ok))
    await settle(breaker.execute(boom)) // 1 of 4
    expect(breaker.state).toBe('closed')
  })

  it('opens on the slow-call ratio even when every call succeeds', async () => {
    const clock = manualClock()
    diagnostics.subscribe('breakwater:circuit-breaker:state', onState)
    const breaker = createCircuitBreaker({
      consecutiveFailures: false,
      slowCallMs: 100,
      slowCallRatio: 0.5,
      minimumCalls: 4,
      clock: clock.now,
    })
    const slow = async (): Promise<string> => {
      clock.advance(150)
      return 'slow but fine'
    }
    await settle(breaker.execute(ok))
    await settle(breaker.execute(ok))
    await settle(breaker.execute(slow))
    expect(breaker.state).toBe('closed')
    await settle(breaker.execute(slow)) // 2 slow of 4
    expect(breaker.state).toBe('open')
    expect(transitions.at(-1)?.reason).toBe('slow_call_ratio')
  })
})

describe('circuit breaker transitions', () => {
  it('goes half-open when the open period ends, and one successful probe closes it', async () => {
    const clock = manualClock()
    diagnostics.subscribe('breakwater:circuit-breaker:state', onState)
    const breaker = createCircuitBreaker({ name: 'p', consecutiveFailures: 1, openMs: 1000, clock: clock.now })
    await settle(breaker.execute(boom))
    clock.advance(999)
    expect(breaker.state).toBe('open')
    expect(await settle(breaker.execute(ok))).toMatchObject({ retryAfterSeconds: 1 })
    clock.advance(1)
    expect(await breaker.execute(ok)).toBe('ok')
    expect(breaker.state).toBe('closed')
    expect(transitions.map((t) => `${t.from}>${t.to}:${t.reason}`)).toEqual([
      'closed>open:consecutive_failures',
      'open>half_open:open_elapsed',
      'half_open>closed:probe_succeeded',
    ])
  })

  it('re-opens on a failed probe, for a period that grows up to the cap, and closing resets the growth', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({
      consecutiveFailures: 1,
      openMs: 1000,
      maxOpenMs: 3000,
      openBackoffFactor: 2,
      clock: clock.now,
    })
    await settle(breaker.execute(boom))
    const periods: number[] = []
    for (let i = 0; i < 4; i++) {
      const before = breaker.snapshot().openRemainingMs
      periods.push(before)
      clock.advance(before)
      await settle(breaker.execute(boom)) // the probe fails
    }
    expect(periods).toEqual([1000, 2000, 3000, 3000])
    clock.advance(3000)
    await breaker.execute(ok)
    expect(breaker.state).toBe('closed')
    await settle(breaker.execute(boom))
    expect(breaker.snapshot().openRemainingMs).toBe(1000)
  })

  it('with halfOpenProbes 3, lets three probes through at once and closes after three successes', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, openMs: 100, halfOpenProbes: 3, clock: clock.now })
    await settle(breaker.execute(boom))
    clock.advance(100)
    const releases: Array<() => void> = []
    const held = () => new Promise<string>((resolve) => releases.push(() => resolve('ok')))
    const calls = Array.from({ length: 5 }, () => settle(breaker.execute(held)))
    expect(releases).toHaveLength(3)
    const rejected = await Promise.all(calls.slice(3))
    expect(rejected.every((e) => isCircuitOpenError(e) && e.state === 'half_open')).toBe(true)
    releases[0]?.()
    releases[1]?.()
    await calls[1]
    expect(breaker.state).toBe('half_open')
    releases[2]?.()
    await calls[2]
    expect(breaker.state).toBe('closed')
  })

  it('a probe whose caller aborted frees its slot without deciding anything', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, openMs: 100, clock: clock.now })
    await settle(breaker.execute(boom))
    clock.advance(100)
    const caller = new AbortController()
    const probe = settle(
      breaker.execute(
        ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        { signal: caller.signal },
      ),
    )
    expect(await settle(breaker.execute(ok))).toSatisfy(isCircuitOpenError)
    caller.abort(new RequestAbortedError('client-gone', 'gone'))
    await probe
    expect(breaker.state).toBe('half_open')
    expect(await breaker.execute(ok)).toBe('ok')
    expect(breaker.state).toBe('closed')
  })

  it('isolate() rejects everything until reset(), and reset() forgets the counts', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 2, clock: clock.now })
    await settle(breaker.execute(boom))
    breaker.isolate()
    clock.advance(60_000)
    expect(breaker.state).toBe('isolated')
    expect(await settle(breaker.execute(ok))).toMatchObject({ code: 'BW_CIRCUIT_OPEN', state: 'isolated' })
    breaker.reset()
    expect(breaker.state).toBe('closed')
    await settle(breaker.execute(boom)) // one failure: the earlier one was forgotten
    expect(breaker.state).toBe('closed')
  })

  it('a snapshot survives JSON and hydrates a new breaker in the same state', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, openMs: 4000, clock: clock.now })
    await settle(breaker.execute(boom))
    clock.advance(1000)
    const snapshot = JSON.parse(JSON.stringify(breaker.snapshot()))
    expect(snapshot).toEqual({ state: 'open', openRemainingMs: 3000, reopens: 0, consecutiveFailures: 0 })
    const restored = createCircuitBreaker({
      consecutiveFailures: 1,
      openMs: 4000,
      clock: clock.now,
      initialState: snapshot,
    })
    expect(restored.state).toBe('open')
    clock.advance(3000)
    expect(restored.state).toBe('half_open')
    expect(() => restored.hydrate({ state: 'bogus' } as never)).toThrow(/initialState/)
  })
})

describe('circuit breaker classification', () => {
  it('does not count the caller’s abort, a deadline or a full bulkhead, and counts an attempt timeout', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, clock: clock.now })
    await settle(breaker.execute(() => Promise.reject(new RequestAbortedError('client-gone', 'gone'))))
    await settle(breaker.execute(() => Promise.reject(new DeadlineExceededError('late'))))
    await settle(breaker.execute(() => Promise.reject(new BulkheadFullError('x', 'full', 1))))
    const caller = new AbortController()
    caller.abort(new Error('caller left'))
    await settle(breaker.execute(boom, { signal: caller.signal }))
    expect(breaker.state).toBe('closed')
    await settle(breaker.execute(() => Promise.reject(new AttemptTimeoutError('x', 100))))
    expect(breaker.state).toBe('open')
  })

  it('a full bulkhead inside the breaker never opens it (opossum’s ESEMLOCKED bug)', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, clock: clock.now })
    const bulkhead = createBulkhead({ limit: 1 })
    let release: () => void = () => {}
    const holding = bulkhead.execute(() => new Promise<void>((resolve) => (release = resolve)))
    for (let i = 0; i < 5; i++) {
      const error = await settle(breaker.execute(() => bulkhead.execute(ok)))
      expect(error).toBeInstanceOf(BulkheadFullError)
    }
    expect(breaker.state).toBe('closed')
    release()
    await holding
  })

  it('counts a Response with status ≥ 500 or 429 as a failure by default, and a predicate decides for errors', async () => {
    const clock = manualClock()
    const breaker = createCircuitBreaker({
      consecutiveFailures: 2,
      isFailure: (error) => !(error instanceof TypeError),
      clock: clock.now,
    })
    const answer = await breaker.execute(() => new Response('no', { status: 503 }))
    expect(answer.status).toBe(503) // the caller still gets the result
    await settle(breaker.execute(() => Promise.reject(new TypeError('not the dependency’s fault')))) // a success
    await breaker.execute(() => new Response('slow down', { status: 429 }))
    expect(breaker.state).toBe('closed')
    await breaker.execute(() => new Response('no', { status: 500 }))
    expect(breaker.state).toBe('open')
    const other = createCircuitBreaker({ consecutiveFailures: 1, clock: clock.now })
    await other.execute(() => new Response('missing', { status: 404 }))
    expect(other.state).toBe('closed')
  })

  it('rejects unknown and invalid options naming the key', () => {
    expect(() => createCircuitBreaker({ treshold: 3 } as never)).toThrow(/"treshold"/)
    expect(() => createCircuitBreaker({ failureRatio: 2 })).toThrow(/"failureRatio"/)
    expect(() => createCircuitBreaker({ slowCallMs: 100 })).toThrow(/"slowCallRatio"/)
    expect(() => createCircuitBreaker({ openMs: 1000, maxOpenMs: 10 })).toThrow(/"maxOpenMs"/)
    expect(() => createCircuitBreaker({ halfOpenProbes: 0 })).toThrow(/"halfOpenProbes"/)
  })
})

describe('circuit breaker shared state', () => {
  it('a breaker of the same name opens when a peer opens, reading the store at most once per interval', async () => {
    const clock = manualClock()
    let reads = 0
    const memory = new MemoryBreakerStateStore({ clock: clock.now })
    const store = {
      open: (name: string, ms: number) => memory.open(name, ms),
      openRemainingMs: (name: string) => {
        reads++
        return memory.openRemainingMs(name)
      },
    }
    diagnostics.subscribe('breakwater:circuit-breaker:state', onState)
    const a = createCircuitBreaker({
      name: 'shared',
      consecutiveFailures: 1,
      openMs: 2000,
      store,
      shareIntervalMs: 500,
      clock: clock.now,
    })
    const b = createCircuitBreaker({
      name: 'shared',
      consecutiveFailures: 1,
      openMs: 2000,
      store,
      shareIntervalMs: 500,
      clock: clock.now,
    })
    await b.execute(ok) // b reads: nothing open
    await settle(a.execute(boom)) // a opens and writes
    await b.execute(ok) // within b's interval: no read, still closed
    expect(b.state).toBe('closed')
    clock.advance(500)
    await b.execute(ok) // this call reads and runs; the answer opens b
    expect(b.state).toBe('open')
    expect(transitions.at(-1)).toEqual({ policy: 'shared', from: 'closed', to: 'open', reason: 'shared' })
    expect(b.snapshot().openRemainingMs).toBe(1500)
    const readsBefore = reads
    for (let i = 0; i < 100; i++) await settle(b.execute(ok))
    expect(reads).toBe(readsBefore) // open: no store reads at all
  })

  it('a store that throws or rejects leaves the breaker working locally (fail-open)', async () => {
    const clock = manualClock()
    const store = {
      open: () => Promise.reject(new Error('down')),
      openRemainingMs: () => {
        throw new Error('down')
      },
    }
    const breaker = createCircuitBreaker({ consecutiveFailures: 1, store, clock: clock.now })
    expect(await breaker.execute(ok)).toBe('ok')
    await settle(breaker.execute(boom))
    expect(breaker.state).toBe('open')
  })
})

describe('circuit breaker properties', () => {
  it('calls arriving together as the open period ends let through exactly halfOpenProbes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 200 }), async (probes, count) => {
        const clock = manualClock()
        const breaker = createCircuitBreaker({
          consecutiveFailures: 1,
          openMs: 1000,
          halfOpenProbes: probes,
          clock: clock.now,
        })
        await settle(breaker.execute(boom))
        clock.advance(1000)
        let ran = 0
        const releases: Array<() => void> = []
        const calls = Array.from({ length: count }, () =>
          settle(
            breaker.execute(() => {
              ran++
              return new Promise<string>((resolve) => releases.push(() => resolve('ok')))
            }),
          ),
        )
        expect(ran).toBe(Math.min(probes, count))
        for (const release of releases) release()
        const results = await Promise.all(calls)
        expect(results.filter((r) => r === 'ok')).toHaveLength(Math.min(probes, count))
        expect(results.filter((r) => isCircuitOpenError(r))).toHaveLength(count - Math.min(probes, count))
        expect(breaker.state).toBe(count >= probes ? 'closed' : 'half_open')
      }),
      { numRuns: 100 },
    )
  }, 60_000)

  it('state-machine invariants hold for any sequence of outcomes and clock moves', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('call' as const), fail: fc.boolean() }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 1500 }) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 60 }), fc.integer({ min: 1, max: 4 }), async (steps, threshold) => {
        const clock = manualClock()
        const breaker = createCircuitBreaker({ consecutiveFailures: threshold, openMs: 1000, clock: clock.now })
        let failuresInRow = 0
        let openedAt = Number.NaN
        for (const s of steps) {
          if (s.kind === 'wait') {
            clock.advance(s.ms)
            continue
          }
          const before = breaker.state
          let ran = false
          const result = await settle(
            breaker.execute(() => {
              ran = true
              return s.fail ? boom() : ok()
            }),
          )
          // A call runs exactly when the breaker was not open; a rejected call never reaches the work.
          expect(ran).toBe(before !== 'open')
          if (!ran) {
            expect(isCircuitOpenError(result)).toBe(true)
            expect(clock.now() - openedAt).toBeLessThan(1000) // never open longer than openMs here
            continue
          }
          if (before === 'half_open') {
            expect(breaker.state).toBe(s.fail ? 'open' : 'closed')
            failuresInRow = 0
          } else {
            failuresInRow = s.fail ? failuresInRow + 1 : 0
            expect(breaker.state).toBe(failuresInRow >= threshold ? 'open' : 'closed')
            if (failuresInRow >= threshold) failuresInRow = 0
          }
          if (breaker.state === 'open') openedAt = clock.now()
        }
      }),
      { numRuns: 300 },
    )
  })
})
