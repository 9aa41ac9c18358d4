// ApproximateRateLimitStore over a counting in-process shared store: busy keys are decided locally between syncs,
// the units admitted here reach the shared store in one call per key per sync, and the excess stays within
// processes × allowance. (Against real Redis with four processes: test/multi-process/exactness.test.ts.)

import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type Algorithm,
  ApproximateRateLimitStore,
  isInvalidOptionError,
  isPromiseLike,
  type RateLimitStore,
  type ResolvedRule,
} from '../src/index.js'
import { SharedStore } from './helpers.js'

const rule = (algorithm: Algorithm, limit: number): ResolvedRule =>
  Object.freeze({ name: 'default', algorithm, limit, windowMs: 3_600_000, burst: limit })

const stores: ApproximateRateLimitStore[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.shutdown()))
})
const approximate = (
  shared: RateLimitStore,
  options: Partial<ConstructorParameters<typeof ApproximateRateLimitStore>[0]> = {},
) => {
  const store = new ApproximateRateLimitStore({ store: shared, ...options })
  stores.push(store)
  return store
}

describe('ApproximateRateLimitStore', () => {
  it('decides a busy key locally and synchronously, and the shared store counts every unit after a sync', async () => {
    const shared = new SharedStore()
    const store = approximate(shared, { maxLocal: 50, maxShare: 0.1, syncMs: 20 })
    const rules = [rule('gcra', 1_000)]
    // The first request is exact: it learns how much is left.
    const first = store.consume('k', rules, 1)
    expect(isPromiseLike(first)).toBe(true)
    expect((await first).rules[0]!.remaining).toBe(999)
    let local = 0
    for (let i = 0; i < 20; i++) {
      const result = store.consume('k', rules, 1)
      if (!isPromiseLike(result)) {
        local++
        expect(result.allowed).toBe(true)
      } else await result
    }
    expect(local).toBe(20)
    expect(local).toBeGreaterThan(shared.consumes)
    await sleep(80)
    // 21 admitted, all counted, in few calls: the exact one and a sync or two.
    expect(shared.inner.peek('k', rules, 0).rules[0]!.remaining).toBe(979)
    expect(shared.consumes).toBeLessThanOrEqual(3)
  })

  it('keeps at most one allowance ahead of the shared store: two "processes" admit at most limit + 2 × L', async () => {
    const shared = new SharedStore()
    const options = { maxLocal: 10, maxShare: 0.1, syncMs: 10 }
    const a = approximate(shared, options)
    const b = approximate(shared, options)
    const rules = [rule('fixed-window', 100)]
    let admitted = 0
    for (let round = 0; round < 30; round++) {
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).consume('k', rules, 1)),
      )
      admitted += results.filter((r) => r.allowed).length
      await sleep(1)
    }
    await Promise.all([a.shutdown(), b.shutdown()])
    expect(admitted).toBeGreaterThanOrEqual(100)
    expect(admitted).toBeLessThanOrEqual(100 + 2 * 10)
    expect(shared.inner.peek('k', rules, 0).rules[0]!.remaining).toBe(0)
  })

  it('decides exactly near the limit and for small limits (allowance below one unit)', async () => {
    const shared = new SharedStore()
    const store = approximate(shared, { maxLocal: 10, maxShare: 0.1, syncMs: 1_000 })
    const small = [rule('gcra', 5)]
    for (let i = 0; i < 5; i++) expect(isPromiseLike(store.consume('small', small, 1))).toBe(true)
    const near = [rule('gcra', 100)]
    await store.consume('near', near, 89)
    // 11 left, one allowance is 10: local decisions until fewer than 10 would be left at the last answer.
    const results = []
    for (let i = 0; i < 12; i++) {
      const result = store.consume('near', near, 1)
      results.push(isPromiseLike(result) ? await result : result)
    }
    expect(results.filter((r) => r.allowed)).toHaveLength(11)
    expect(results.at(-1)!.allowed).toBe(false)
    expect(results.at(-1)!.retryAfterMs).toBeGreaterThan(0)
  })

  it('names a bad or unknown option', () => {
    const shared = new SharedStore()
    const invalid = (options: object): string | undefined => {
      try {
        new ApproximateRateLimitStore(options as never)
      } catch (error) {
        if (isInvalidOptionError(error)) return error.option
        throw error
      }
      return undefined
    }
    expect(invalid({})).toBe('store')
    expect(invalid({ store: shared, syncMs: 0 })).toBe('syncMs')
    expect(invalid({ store: shared, syncMs: 'soon' })).toBe('syncMs')
    expect(invalid({ store: shared, maxShare: 2 })).toBe('maxShare')
    expect(invalid({ store: shared, maxLocal: 0 })).toBe('maxLocal')
    expect(() => new ApproximateRateLimitStore({ store: shared, syncMS: 5 } as never)).toThrow(/syncMS/)
  })
})
