// LeasingRateLimitStore over a counting in-process shared store: hot keys are decided locally from a charged slice,
// leases end with their window, and unused units go back.

import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type Algorithm,
  isPromiseLike,
  LeasingRateLimitStore,
  type RateLimitStore,
  type ResolvedRule,
} from '../src/index.js'
import { SharedStore } from './helpers.js'

const rule = (algorithm: Algorithm, limit: number, windowMs: number): ResolvedRule =>
  Object.freeze({ name: 'default', algorithm, limit, windowMs, burst: limit })

const stores: LeasingRateLimitStore[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.shutdown()))
})
const leasing = (
  shared: RateLimitStore,
  options: Partial<ConstructorParameters<typeof LeasingRateLimitStore>[0]> = {},
) => {
  const store = new LeasingRateLimitStore({ store: shared, ...options })
  stores.push(store)
  return store
}

describe('LeasingRateLimitStore', () => {
  it.each<Algorithm>(['gcra', 'fixed-window', 'sliding-window'])(
    '%s: a hot key is decided in-process from its slice, one shared call per slice, never past the limit',
    async (algorithm) => {
      const shared = new SharedStore()
      const store = leasing(shared, { maxSlice: 32, maxShare: 0.1, leaseMs: 10_000 })
      const rules = [rule(algorithm, 1_000, 3_600_000)]
      let admitted = 0
      let local = 0
      for (let i = 0; i < 1_200; i++) {
        const decision = store.consume('k', rules, 1)
        if (!isPromiseLike(decision)) local++
        if ((await decision).allowed) admitted++
      }
      expect(admitted).toBe(1_000)
      expect(local).toBeGreaterThan(900)
      // Slices of 32: about 1000 / 32 lease calls, plus the first requests and the denials decided exactly.
      expect(shared.consumes).toBeLessThan(1_200 - 900 + 40)
    },
  )

  it('reports remaining as the shared count plus the unspent slice', async () => {
    const store = leasing(new SharedStore(), { maxSlice: 10, maxShare: 1 })
    const rules = [rule('gcra', 100, 60_000)]
    const remaining: number[] = []
    for (let i = 0; i < 5; i++) remaining.push((await store.consume('k', rules, 1)).rules[0]!.remaining)
    expect(remaining).toEqual([99, 98, 97, 96, 95])
  })

  it('ends a lease with the fixed window it was charged in, so no unit is spent in the next window', async () => {
    const shared = new SharedStore()
    const store = leasing(shared, { maxSlice: 50, maxShare: 0.5, leaseMs: 60_000 })
    const rules = [rule('fixed-window', 100, 300)]
    for (let i = 0; i < 5; i++) await store.consume('k', rules, 1)
    expect(isPromiseLike(store.consume('k', rules, 1))).toBe(false) // spending a lease
    await sleep(350)
    expect(isPromiseLike(store.consume('k', rules, 1))).toBe(true) // the window ended: back to the shared store
  })

  it('hands the unused units of an ended lease back to the shared store', async () => {
    const shared = new SharedStore()
    const store = leasing(shared, { maxSlice: 20, maxShare: 1, leaseMs: 50 })
    const rules = [rule('gcra', 100, 3_600_000)]
    for (let i = 0; i < 4; i++) await store.consume('k', rules, 1)
    // The fourth request took a slice of 4 and spent 1 of it.
    expect(shared.inner.peek('k', rules, 0).rules[0]!.remaining).toBe(93)
    await sleep(150)
    expect(shared.refunds).toBe(1)
    expect(shared.inner.peek('k', rules, 0).rules[0]!.remaining).toBe(96)
  })

  it('leases nothing for small limits (maxShare) and refuses a shared store without refund()', async () => {
    const shared = new SharedStore()
    const store = leasing(shared)
    const rules = [rule('gcra', 50, 60_000)] // 1 % of 50 is under one unit
    for (let i = 0; i < 10; i++) await store.consume('k', rules, 1)
    expect(shared.consumes).toBe(10)
    const noRefund: RateLimitStore = { consume: shared.consume, peek: shared.peek, reset: shared.reset }
    expect(() => new LeasingRateLimitStore({ store: noRefund })).toThrow(/"store"/)
    expect(() => new LeasingRateLimitStore({ store: shared, maxShare: 2 })).toThrow(/"maxShare"/)
  })
})
