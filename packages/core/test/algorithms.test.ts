import { describe, expect, it } from 'vitest'
import { type Algorithm, MemoryRateLimitStore, type ResolvedRule } from '../src/index.js'
import { manualClock } from './helpers.js'

const rule = (algorithm: Algorithm, limit: number, windowMs: number, burst = limit): ResolvedRule => ({
  name: 'r',
  algorithm,
  limit,
  windowMs,
  burst,
})

describe.each(['gcra', 'fixed-window', 'sliding-window'] as const)('%s', (algorithm) => {
  it('admits exactly `limit` requests in a burst, counting `remaining` down, then denies', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule(algorithm, 5, 10_000)]
    const remaining = []
    for (let i = 0; i < 5; i++) {
      const result = store.consume('k', rules, 1)
      expect(result.allowed).toBe(true)
      remaining.push(result.rules[0]?.remaining)
    }
    expect(remaining).toEqual([4, 3, 2, 1, 0])
    const denied = store.consume('k', rules, 1)
    expect(denied.allowed).toBe(false)
    expect(denied.retryAfterMs).toBeGreaterThan(0)
    expect(denied.retryAfterMs).toBeLessThanOrEqual(20_000)
  })

  it('admits again exactly when retryAfterMs has passed, not a millisecond before', () => {
    const clock = manualClock(7_777)
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule(algorithm, 4, 1_000)]
    for (let round = 0; round < 5; round++) {
      while (store.consume('k', rules, 1).allowed) clock.advance(round * 37)
      const wait = store.peek('k', rules, 1).retryAfterMs
      expect(wait).toBeGreaterThan(0)
      clock.advance(wait - 1)
      expect(store.peek('k', rules, 1).allowed).toBe(false)
      clock.advance(1)
      expect(store.consume('k', rules, 1).allowed).toBe(true)
    }
  })

  it('charges `cost` units and never admits a cost larger than the limit', () => {
    const store = new MemoryRateLimitStore({ now: manualClock().now })
    const rules = [rule(algorithm, 10, 60_000)]
    expect(store.consume('k', rules, 7).rules[0]?.remaining).toBe(3)
    expect(store.consume('k', rules, 4).allowed).toBe(false)
    expect(store.consume('k', rules, 3).rules[0]?.remaining).toBe(0)
    expect(store.consume('other', rules, 11).allowed).toBe(false)
  })

  it('peek reports without charging', () => {
    const store = new MemoryRateLimitStore({ now: manualClock().now })
    const rules = [rule(algorithm, 3, 60_000)]
    store.consume('k', rules, 1)
    expect(store.peek('k', rules, 1).rules[0]?.remaining).toBe(1)
    expect(store.peek('k', rules, 1).rules[0]?.remaining).toBe(1)
    expect(store.consume('k', rules, 1).rules[0]?.remaining).toBe(1)
  })
})

describe('gcra', () => {
  it('spreads the quota: after a burst one unit returns every window/limit ms', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('gcra', 10, 1_000)]
    for (let i = 0; i < 10; i++) store.consume('k', rules, 1)
    expect(store.consume('k', rules, 1).retryAfterMs).toBeCloseTo(100, 6)
    clock.advance(100)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    expect(store.consume('k', rules, 1).allowed).toBe(false)
    clock.advance(250)
    const result = store.consume('k', rules, 1)
    expect(result.allowed).toBe(true)
    expect(result.rules[0]?.remaining).toBe(1)
  })

  it('limits bursts to `burst` while keeping the long-run rate', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('gcra', 100, 100_000, 3)]
    let admitted = 0
    for (let i = 0; i < 10; i++) if (store.consume('k', rules, 1).allowed) admitted++
    expect(admitted).toBe(3)
    clock.advance(1_000)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
  })
})

describe('fixed-window', () => {
  it('resets the whole quota at the end of the window that began with the first request', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('fixed-window', 2, 1_000)]
    store.consume('k', rules, 1)
    clock.advance(400)
    store.consume('k', rules, 1)
    const denied = store.consume('k', rules, 1)
    expect(denied.retryAfterMs).toBe(600)
    clock.advance(600)
    expect(store.consume('k', rules, 1).rules[0]?.remaining).toBe(1)
  })
})

describe('sliding-window', () => {
  it('weights the previous window by the part of it still inside the sliding window', () => {
    const clock = manualClock(0)
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('sliding-window', 10, 1_000)]
    for (let i = 0; i < 10; i++) store.consume('k', rules, 1)
    clock.advance(1_250) // a quarter into the next window: 10 * 0.75 = 7.5 still count
    const result = store.consume('k', rules, 1)
    expect(result.allowed).toBe(true)
    expect(result.rules[0]?.remaining).toBe(1)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    expect(store.consume('k', rules, 1).allowed).toBe(false)
  })
})

describe('several rules', () => {
  it('a request denied by one rule charges none of the others', () => {
    const store = new MemoryRateLimitStore({ now: manualClock().now })
    const rules: ResolvedRule[] = [
      { ...rule('gcra', 2, 1_000), name: 'second' },
      { ...rule('fixed-window', 100, 3_600_000), name: 'hour' },
    ]
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    for (let i = 0; i < 5; i++) {
      const denied = store.consume('k', rules, 1)
      expect(denied.allowed).toBe(false)
      expect(denied.rules.map((r) => r.allowed)).toEqual([false, true])
    }
    expect(store.peek('k', rules, 1).rules[1]?.remaining).toBe(98)
  })
})

describe('sliding-window refunds', () => {
  it('gives a charge of the previous window back to the previous window’s count, which weighs less', () => {
    const clock = manualClock(10_000) // the start of window 1 of 10 s
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('sliding-window', 4, 10_000)]
    for (let i = 0; i < 4; i++) store.consume('k', rules, 1)
    clock.advance(15_000) // half-way through window 2: the previous window's 4 count as 2
    expect(store.consume('k', rules, 2).allowed).toBe(true)
    expect(store.peek('k', rules, 1).allowed).toBe(false)
    // One unit charged 12 s ago (window 1) weighs half here, so half a unit comes back: still no room for one.
    store.refund('k', rules, 1, 12_000)
    expect(store.peek('k', rules, 1).allowed).toBe(false)
    // One charged now (window 2) comes back whole.
    store.refund('k', rules, 1, 0)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    expect(store.peek('k', rules, 1).allowed).toBe(false)
  })

  it('gives nothing back for a charge older than both counted windows', () => {
    const clock = manualClock(10_000)
    const store = new MemoryRateLimitStore({ now: clock.now })
    const rules = [rule('sliding-window', 2, 10_000)]
    store.consume('k', rules, 2)
    store.refund('k', rules, 2, 25_000)
    expect(store.peek('k', rules, 1).allowed).toBe(false)
  })
})
