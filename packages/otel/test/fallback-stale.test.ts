// Fallback and stale answers as metrics, from the real policies: one counter each by policy and reason, and the
// age of stale answers as a histogram.

import { createFallback, createStaleIfError, MemoryResultStore } from '@breakwater/core'
import { afterEach, expect, it } from 'vitest'
import { COUNTERS, HISTOGRAMS, type Instrumentation, instrument } from '../src/index.js'
import { pointsOf, sumOf, type TestMeter, testMeter } from './metrics-sdk.js'

let meter: TestMeter | undefined
let instrumentation: Instrumentation | undefined
afterEach(async () => {
  instrumentation?.unsubscribe()
  await meter?.shutdown()
})

it('counts fallback and stale answers by policy and reason, and records the stale answers’ age', async () => {
  meter = testMeter()
  instrumentation = instrument({ meterProvider: meter.meterProvider })
  let now = 1_700_000_000_000
  const clock = (): number => now
  const stale = createStaleIfError({
    name: 'inventory',
    store: new MemoryResultStore({ now: clock }),
    now: clock,
    maxStaleMs: '1m',
  })
  const fallback = createFallback({ name: 'recommendations', value: [] as string[] })
  const down = (): Promise<never> => Promise.reject(new Error('ECONNREFUSED'))

  await stale.execute(() => ({ qty: 1 }), { cacheKey: 'sku-1' })
  await new Promise((resolve) => setImmediate(resolve))
  now += 2_000
  await stale.execute(down, { cacheKey: 'sku-1' })
  now += 18_000
  await stale.execute(down, { cacheKey: 'sku-1' })
  await fallback.execute(down)

  const data = await meter.collect()
  const staleServed = { 'breakwater.policy': 'inventory', 'breakwater.reason': 'error' }
  expect(sumOf(data, COUNTERS.staleServed.name, staleServed)).toBe(2)
  expect(
    sumOf(data, COUNTERS.fallbackServed.name, { 'breakwater.policy': 'recommendations', 'breakwater.reason': 'error' }),
  ).toBe(1)
  const [age] = pointsOf(data, HISTOGRAMS.staleAge.name, staleServed)
  expect(age?.value).toMatchObject({ count: 2, sum: 22, min: 2, max: 20 })
})
