import { describe, expect, it } from 'vitest'
import { isInvalidOptionError, MemoryRateLimitStore, type ResolvedRule } from '../src/index.js'
import { manualClock } from './helpers.js'

const rules: ResolvedRule[] = [{ name: 'r', algorithm: 'gcra', limit: 2, windowMs: 1_000, burst: 2 }]

describe('MemoryRateLimitStore', () => {
  it('never holds more than maxKeys keys, evicting the least recently used', () => {
    const store = new MemoryRateLimitStore({ maxKeys: 3, now: manualClock().now })
    for (const key of ['a', 'b', 'c']) store.consume(key, rules, 1)
    store.consume('a', rules, 1) // a is now the most recent
    store.consume('d', rules, 1)
    expect(store.size).toBe(3)
    expect(store.peek('b', rules, 1).rules[0]?.remaining).toBe(1) // b was evicted: fresh
    expect(store.peek('a', rules, 1).allowed).toBe(false) // a kept its state
  })

  it('keeps a key that keeps getting denied from being evicted', () => {
    const store = new MemoryRateLimitStore({ maxKeys: 2, now: manualClock().now })
    store.consume('attacker', rules, 2)
    store.consume('x', rules, 1)
    expect(store.consume('attacker', rules, 1).allowed).toBe(false)
    store.consume('y', rules, 1) // evicts x, the least recently used
    expect(store.consume('attacker', rules, 1).allowed).toBe(false)
  })

  it('expires state lazily without timers', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ now: clock.now })
    store.consume('k', rules, 2)
    clock.advance(1_000)
    expect(store.consume('k', rules, 2).allowed).toBe(true)
  })

  it('starts an expired key over in place, and a key charged under other rules over with their width', () => {
    const clock = manualClock()
    const store = new MemoryRateLimitStore({ maxKeys: 2, now: clock.now })
    store.consume('k', rules, 2)
    store.consume('other', rules, 1)
    clock.advance(1_000) // k's state has expired: it counts as a new key, in the entry it already had
    expect(store.consume('k', rules, 1).rules[0]?.remaining).toBe(1)
    expect(store.consume('k', rules, 1).allowed).toBe(true)
    expect(store.consume('k', rules, 1).allowed).toBe(false)
    expect(store.size).toBe(2)
    // k was used since the last eviction pass and 'other' has expired: a new key evicts 'other', not k.
    store.consume('new', rules, 1)
    expect(store.peek('k', rules, 1).allowed).toBe(false)
    // The same key under two rules (another limiter sharing the id): its one-rule state no longer applies.
    const two: ResolvedRule[] = [
      ...rules,
      { name: 's', algorithm: 'fixed-window', limit: 3, windowMs: 1_000, burst: 3 },
    ]
    const both = store.consume('k', two, 1)
    expect(both.allowed).toBe(true)
    expect(both.rules.map((r) => r.remaining)).toEqual([1, 2])
    expect(store.consume('k', two, 1).rules.map((r) => r.remaining)).toEqual([0, 1])
  })

  it('reset forgets a key and shutdown forgets all', () => {
    const store = new MemoryRateLimitStore({ now: manualClock().now })
    store.consume('k', rules, 2)
    store.reset('k')
    expect(store.consume('k', rules, 2).allowed).toBe(true)
    store.shutdown()
    expect(store.size).toBe(0)
  })

  it('rejects invalid options naming the option and the value', () => {
    expect(() => new MemoryRateLimitStore({ maxKeys: 0 })).toThrow(/"maxKeys".*got 0/)
    expect(() => new MemoryRateLimitStore({ maxKeys: 1.5 })).toThrow(/"maxKeys"/)
    try {
      new MemoryRateLimitStore({ now: 5 as never })
    } catch (error) {
      expect(isInvalidOptionError(error)).toBe(true)
    }
  })
})
