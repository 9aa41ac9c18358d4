// Stale-if-error with an injected clock: what is stored (plain data, every success), what is served on failure
// (fresh enough, with its age) and what is not (too old, corrupt, foreign, the caller's own abort), and that a
// failing or hanging store never fails nor stalls the call.

import diagnostics from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import { servedUpstream } from '../src/execute/served.js'
import { createFallback as fallbackOf } from '../src/fallback/fallback.js'
import {
  CircuitOpenError,
  compose,
  createStaleIfError,
  isInvalidOptionError,
  MemoryResultStore,
  type ResultStore,
  type StaleServedEvent,
  type StoredResult,
  type StoreErrorEvent,
} from '../src/index.js'
import { manualClock, thrown, until } from './helpers.js'

const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )
const fail = (error: unknown) => (): Promise<never> => Promise.reject(error)
/** Lets background store writes (not awaited by the call) land. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

const staleEvents: StaleServedEvent[] = []
const storeErrors: StoreErrorEvent[] = []
const onStale = (m: unknown): void => {
  staleEvents.push(m as StaleServedEvent)
}
const onStoreError = (m: unknown): void => {
  storeErrors.push(m as StoreErrorEvent)
}
diagnostics.subscribe('breakwater:stale:served', onStale)
diagnostics.subscribe('breakwater:store:error', onStoreError)
afterEach(() => {
  staleEvents.length = 0
  storeErrors.length = 0
})

function setup(options: { maxStaleMs?: number; ttlMs?: number } = {}) {
  const clock = manualClock(1_700_000_000_000)
  const store = new MemoryResultStore({ now: clock.now })
  const stale = createStaleIfError({ name: 'stock', store, now: clock.now, ...options })
  return { clock, store, stale }
}

describe('stale-if-error', () => {
  it('serves the last good result with its age when the call fails', async () => {
    const { clock, stale } = setup({ maxStaleMs: 60_000 })
    await expect(stale.run(() => ({ sku: 'a', qty: 3 }), { cacheKey: 'a' })).resolves.toEqual({
      value: { sku: 'a', qty: 3 },
      source: 'upstream',
      ageMs: 0,
    })
    await flush()
    clock.advance(12_345)
    const outage = new Error('ECONNREFUSED')
    await expect(stale.run(fail(outage), { cacheKey: 'a' })).resolves.toEqual({
      value: { sku: 'a', qty: 3 },
      source: 'stale',
      ageMs: 12_345,
      error: outage,
    })
    expect(staleEvents).toEqual([{ policy: 'stock', ageMs: 12_345, reason: 'error' }])
    // Each key has its own result.
    await expect(settle(stale.execute(fail(outage), { cacheKey: 'b' }))).resolves.toBe(outage)
  })

  it('serves a result exactly maxStaleMs old, and rethrows the error once it is older', async () => {
    const { clock, stale } = setup({ maxStaleMs: 1000, ttlMs: 10_000 })
    await stale.execute(() => 'v1', { cacheKey: 'k' })
    await flush()
    clock.advance(1000)
    await expect(stale.execute(fail(new Error('x')), { cacheKey: 'k' })).resolves.toBe('v1')
    clock.advance(1)
    const error = new Error('still down')
    await expect(settle(stale.execute(fail(error), { cacheKey: 'k' }))).resolves.toBe(error)
  })

  it('refreshes the stored result on every success', async () => {
    const { clock, stale } = setup({ maxStaleMs: 1000 })
    await stale.execute(() => 'old', { cacheKey: 'k' })
    await flush()
    clock.advance(900)
    await stale.execute(() => 'new', { cacheKey: 'k' })
    await flush()
    clock.advance(900)
    await expect(stale.run(fail(new Error('x')), { cacheKey: 'k' })).resolves.toMatchObject({
      value: 'new',
      ageMs: 900,
    })
  })

  it('keeps entries only for ttlMs in the memory store', async () => {
    const clock = manualClock(5_000)
    const store = new MemoryResultStore({ now: clock.now })
    await store.set('k', '"v"', 100)
    clock.advance(99)
    await expect(store.get('k')).resolves.toEqual({ value: '"v"', storedAt: 5_000 })
    clock.advance(1)
    await expect(store.get('k')).resolves.toBeUndefined()
    expect(store.size).toBe(0)
    expect(store.bytes).toBe(0)
  })

  it('answers only the reasons in `on`', async () => {
    const clock = manualClock()
    const stale = createStaleIfError({
      name: 'stock',
      store: new MemoryResultStore({ now: clock.now }),
      now: clock.now,
      on: ['circuit-open'],
    })
    await stale.execute(() => 1, { cacheKey: 'k' })
    await flush()
    const plain = new Error('500')
    await expect(settle(stale.execute(fail(plain), { cacheKey: 'k' }))).resolves.toBe(plain)
    await expect(stale.execute(fail(new CircuitOpenError('stock', 'open', 1)), { cacheKey: 'k' })).resolves.toBe(1)
    expect(staleEvents).toEqual([{ policy: 'stock', ageMs: 0, reason: 'circuit-open' }])
  })

  it('never answers the caller’s own abort', async () => {
    const { stale } = setup()
    await stale.execute(() => 1, { cacheKey: 'k' })
    await flush()
    const controller = new AbortController()
    const reason = new Error('client gone')
    const call = stale.execute(
      ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      { signal: controller.signal, cacheKey: 'k' },
    )
    controller.abort(reason)
    await expect(settle(call)).resolves.toBe(reason)
    expect(staleEvents).toEqual([])
  })

  it('needs a cache key per call: without one it fails before running the work', async () => {
    const { stale } = setup()
    let ran = false
    const error = await settle(
      stale.execute(() => {
        ran = true
        return 1
      }),
    )
    expect(isInvalidOptionError(error) && error.option).toBe('cacheKey')
    expect(ran).toBe(false)
    expect(isInvalidOptionError(await settle(stale.execute(() => 1, { cacheKey: '' })))).toBe(true)
  })

  it('stores only plain data: a Map, a class instance or undefined is not stored (warned once)', async () => {
    const { store, stale } = setup()
    const warnings: unknown[] = []
    const onWarning = (m: unknown): void => {
      warnings.push(m)
    }
    diagnostics.subscribe('breakwater:warning', onWarning)
    try {
      class Reply {
        body = 'x'
      }
      await expect(stale.execute(() => new Map([['a', 1]]), { cacheKey: 'map' })).resolves.toBeInstanceOf(Map)
      await stale.execute(() => new Reply(), { cacheKey: 'instance' })
      await stale.execute(() => undefined, { cacheKey: 'undefined' })
      await stale.execute(() => ({ nested: { at: new Date(0) }, list: [1, null] }), { cacheKey: 'plain' })
      await flush()
      expect(store.size).toBe(1)
      await expect(stale.execute(fail(new Error('x')), { cacheKey: 'plain' })).resolves.toEqual({
        nested: { at: '1970-01-01T00:00:00.000Z' },
        list: [1, null],
      })
      expect(warnings).toEqual([{ code: 'BW_STALE_UNSTORABLE', message: expect.stringContaining('"stock"') }])
    } finally {
      diagnostics.unsubscribe('breakwater:warning', onWarning)
    }
  })

  it('treats a corrupt or foreign entry as a miss', async () => {
    const entries: Record<string, unknown> = {
      'stock:corrupt': { value: '{"sku": "a", "qty":', storedAt: Date.now() },
      'stock:not-a-string': { value: { sku: 'a' }, storedAt: Date.now() },
      'stock:no-time': { value: '1' },
      'stock:garbage': 'x',
    }
    const store: ResultStore = {
      get: async (key) => entries[key] as StoredResult | undefined,
      set: async () => {},
    }
    const stale = createStaleIfError({ name: 'stock', store })
    for (const cacheKey of ['corrupt', 'not-a-string', 'no-time', 'garbage']) {
      const error = new Error(cacheKey)
      await expect(settle(stale.execute(fail(error), { cacheKey }))).resolves.toBe(error)
    }
    expect(staleEvents).toEqual([])
  })

  it('never fails the call on a failing store, and reports it on breakwater:store:error', async () => {
    const broken = new Error('READONLY')
    const store: ResultStore = {
      get: () => Promise.reject(broken),
      set: () => Promise.reject(broken),
    }
    const stale = createStaleIfError({ name: 'stock', store })
    await expect(stale.execute(() => 'fresh', { cacheKey: 'k' })).resolves.toBe('fresh')
    await until(() => storeErrors.length === 1)
    expect(storeErrors[0]).toMatchObject({ policy: 'stock', operation: 'set', action: 'fail-open' })
    const outage = new Error('down')
    await expect(settle(stale.execute(fail(outage), { cacheKey: 'k' }))).resolves.toBe(outage)
    expect(storeErrors.map((e) => e.operation)).toEqual(['set', 'get'])
  })

  it('bounds a hanging read by storeTimeoutMs: the call fails with its own error soon after', async () => {
    const store: ResultStore = { get: () => new Promise(() => {}), set: async () => {} }
    const stale = createStaleIfError({ name: 'stock', store, storeTimeoutMs: 50 })
    const outage = new Error('down')
    const started = performance.now()
    await expect(settle(stale.execute(fail(outage), { cacheKey: 'k' }))).resolves.toBe(outage)
    const waited = performance.now() - started
    expect(waited).toBeGreaterThanOrEqual(45)
    expect(waited).toBeLessThan(1000)
    expect(storeErrors).toMatchObject([{ operation: 'get', kind: 'timeout', action: 'fail-open' }])
  })

  it('writes one key at a time, and a hanging write is cut at storeTimeoutMs', async () => {
    let writes = 0
    const store: ResultStore = {
      get: async () => undefined,
      set: () => {
        writes++
        return new Promise(() => {})
      },
    }
    const stale = createStaleIfError({ name: 'stock', store, storeTimeoutMs: 50 })
    await stale.execute(() => 1, { cacheKey: 'k' })
    await stale.execute(() => 2, { cacheKey: 'k' })
    await stale.execute(() => 3, { cacheKey: 'other' })
    expect(writes).toBe(2)
    await until(() => storeErrors.length === 2)
    expect(storeErrors).toMatchObject([
      { operation: 'set', kind: 'timeout' },
      { operation: 'set', kind: 'timeout' },
    ])
    // The key is free again once its write was given up: the next success tries to write (and meets the guard,
    // which skips a store that just timed out, so it is reported without a call).
    await stale.execute(() => 4, { cacheKey: 'k' })
    await until(() => storeErrors.length === 3)
    expect(storeErrors[2]).toMatchObject({ operation: 'set', kind: 'error' })
    expect(writes).toBe(2)
  })

  it('answers before a fallback layered outside it; the fallback answers when nothing is stored', async () => {
    const { clock, stale } = setup()
    const fallback = fallbackOf({ name: 'stock', value: 'canned' })
    const layered = (work: () => Promise<string>, cacheKey: string) =>
      fallback.serve(() => stale.serve(() => work().then(servedUpstream), { cacheKey }), { cacheKey })

    await expect(layered(fail(new Error('x')), 'k')).resolves.toMatchObject({ value: 'canned', source: 'fallback' })
    await expect(layered(async () => 'real', 'k')).resolves.toMatchObject({ value: 'real', source: 'upstream' })
    await flush()
    clock.advance(250)
    await expect(layered(fail(new Error('x')), 'k')).resolves.toMatchObject({
      value: 'real',
      source: 'stale',
      ageMs: 250,
    })
    // The same order with compose(): stale-if-error inside the fallback.
    const composed = compose(fallback, stale)
    await expect(composed.execute(fail(new Error('x')), { cacheKey: 'k' })).resolves.toBe('real')
    await expect(composed.execute(fail(new Error('x')), { cacheKey: 'none' })).resolves.toBe('canned')
  })

  it('keeps the results of two policies on one store apart', async () => {
    const clock = manualClock()
    const store = new MemoryResultStore({ now: clock.now })
    const a = createStaleIfError({ name: 'a', store, now: clock.now })
    const b = createStaleIfError({ name: 'b', store, now: clock.now })
    await a.execute(() => 'from a', { cacheKey: 'same' })
    await flush()
    const error = new Error('x')
    await expect(settle(b.execute(fail(error), { cacheKey: 'same' }))).resolves.toBe(error)
    await expect(a.execute(fail(error), { cacheKey: 'same' })).resolves.toBe('from a')
  })

  it('rejects bad options, naming them', () => {
    expect(thrown(() => createStaleIfError({ maxStale: 5 } as never))).toMatchObject({
      message: expect.stringMatching(/Unknown option "maxStale".*did you mean "maxStaleMs"/),
    })
    expect(thrown(() => createStaleIfError({ maxStaleMs: '10 mins' }))).toMatchObject({ option: 'maxStaleMs' })
    expect(thrown(() => createStaleIfError({ maxStaleMs: '10m', ttlMs: '5m' }))).toMatchObject({ option: 'ttlMs' })
    expect(thrown(() => createStaleIfError({ store: {} as never }))).toMatchObject({ option: 'store' })
    expect(thrown(() => createStaleIfError({ on: ['stale'] as never }))).toMatchObject({ option: 'on' })
  })
})

describe('MemoryResultStore', () => {
  it('evicts the least recently used entry beyond maxEntries', async () => {
    const store = new MemoryResultStore({ maxEntries: 2 })
    await store.set('a', '1', 60_000)
    await store.set('b', '2', 60_000)
    await store.get('a') // a is now the most recently used
    await store.set('c', '3', 60_000)
    expect(await store.get('b')).toBeUndefined()
    expect((await store.get('a'))?.value).toBe('1')
    expect((await store.get('c'))?.value).toBe('3')
    expect(store.size).toBe(2)
  })

  it('bounds the bytes held: least recently used out first, and a value larger than maxBytes is not kept', async () => {
    const store = new MemoryResultStore({ maxBytes: 100 })
    await store.set('a', 'x'.repeat(20), 60_000) // 40 bytes
    await store.set('b', 'y'.repeat(20), 60_000) // 80
    await store.set('c', 'z'.repeat(20), 60_000) // 120 > 100: a goes
    expect(store.bytes).toBe(80)
    expect(await store.get('a')).toBeUndefined()
    await store.set('b', 'w'.repeat(5), 60_000) // replaced: 40 + 10
    expect(store.bytes).toBe(50)
    await store.set('huge', 'h'.repeat(51), 60_000)
    expect(await store.get('huge')).toBeUndefined()
    expect(store.bytes).toBe(50)
  })
})
