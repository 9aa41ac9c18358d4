import { describe, expect, it } from 'vitest'
import { createLoadShedder, type LimitOptions, type LoadShedder, type Permit } from '../src/index.js'
import { manualClock } from './helpers.js'

/** Keep the shedder full for `rounds` rounds: take every permit it gives, let `rttMs` pass, release them all. */
function drive(shedder: LoadShedder, clock: ReturnType<typeof manualClock>, rttMs: number, rounds: number): number[] {
  const limits: number[] = []
  for (let round = 0; round < rounds; round++) {
    const permits: Permit[] = []
    for (;;) {
      const result = shedder.acquire()
      if (!('release' in result)) break
      permits.push(result as Permit)
    }
    clock.advance(rttMs)
    for (const permit of permits) permit.release()
    limits.push(shedder.limit)
  }
  return limits
}

const windowed = { windowMs: 50, windowSamples: 5 }

describe.each<[string, LimitOptions]>([
  ['gradient2', { algorithm: 'gradient2', ...windowed }],
  ['aimd', { algorithm: 'aimd', timeoutMs: 30, ...windowed }],
  ['vegas', { algorithm: 'vegas', ...windowed }],
])('%s limit driven by scripted latencies', (_name, limit) => {
  it('falls when latency rises and recovers when it falls back', () => {
    const clock = manualClock()
    const shedder = createLoadShedder({ limit, clock: clock.now })
    const start = shedder.limit
    const healthy = drive(shedder, clock, 10, 60)
    const settled = healthy.at(-1) as number
    expect(settled).toBeGreaterThanOrEqual(start) // no queueing: the limit does not shrink
    const slow = drive(shedder, clock, 60, 60)
    const low = slow.at(-1) as number
    expect(low).toBeLessThan(settled * 0.7)
    const recovered = drive(shedder, clock, 10, 200).at(-1) as number
    expect(recovered).toBeGreaterThan(low * 1.3)
  })
})

describe('limit bounds and events', () => {
  it('a static limit never moves, whatever the latency', () => {
    const clock = manualClock()
    const shedder = createLoadShedder({ limit: 7, clock: clock.now })
    expect(shedder.algorithm).toBe('static')
    expect(new Set([...drive(shedder, clock, 5, 20), ...drive(shedder, clock, 500, 20)])).toEqual(new Set([7]))
  })

  it('stays within minLimit and maxLimit', () => {
    const clock = manualClock()
    const shedder = createLoadShedder({
      limit: { algorithm: 'gradient2', minLimit: 5, maxLimit: 30, initialLimit: 10, ...windowed },
      clock: clock.now,
    })
    expect(Math.max(...drive(shedder, clock, 10, 300))).toBe(30)
    expect(Math.min(...drive(shedder, clock, 1000, 300))).toBeGreaterThanOrEqual(5)
  })

  it('an application-limited service (few requests in flight) keeps its limit', () => {
    const clock = manualClock()
    const shedder = createLoadShedder({ limit: { algorithm: 'gradient2', ...windowed }, clock: clock.now })
    for (let i = 0; i < 200; i++) {
      const permit = shedder.acquire() as Permit
      clock.advance(i % 2 === 0 ? 5 : 500) // erratic latency, but only one request at a time
      permit.release()
    }
    expect(shedder.limit).toBe(20)
  })

  it('AIMD backs off on drops (503/504 or timeouts), multiplicatively', () => {
    const clock = manualClock()
    const shedder = createLoadShedder({
      limit: { algorithm: 'aimd', initialLimit: 100, windowMs: 10, windowSamples: 1 },
      clock: clock.now,
    })
    const permits = Array.from({ length: 60 }, () => shedder.acquire() as Permit)
    clock.advance(20)
    ;(permits[0] as Permit).release('dropped')
    expect(shedder.limit).toBe(90)
  })

  it('rejects invalid limit options naming the option', () => {
    expect(() => createLoadShedder({ limit: 0 })).toThrow(/"limit.limit"/)
    expect(() => createLoadShedder({ limit: 'cubic' as never })).toThrow(/"limit.algorithm"/)
    expect(() => createLoadShedder({ limit: { algorithm: 'gradient2', minLimit: 10, maxLimit: 5 } })).toThrow(
      /"limit.maxLimit"/,
    )
    expect(() => createLoadShedder({ limit: { algorithm: 'gradient2', smoothing: 0 } })).toThrow(/"limit.smoothing"/)
    expect(() => createLoadShedder({ limit: { algorithm: 'aimd', backoffRatio: 1 } })).toThrow(/"limit.backoffRatio"/)
  })
})
