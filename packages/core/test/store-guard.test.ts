// StoreGuard's shared timer: each call still times out at its own deadline, answered calls never time out,
// and a late answer does not mark the store healthy.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { StoreGuard } from '../src/stores/store-guard.js'

const never = (): Promise<never> => new Promise(() => {})
const later = <T>(ms: number, value: T): Promise<T> => new Promise((resolve) => setTimeout(resolve, ms, value))

afterEach(() => {
  vi.useRealTimers()
})

describe('StoreGuard', () => {
  it('times out every call at its own deadline with one timer', async () => {
    const guard = new StoreGuard(50)
    const started = performance.now()
    const first = Promise.resolve(guard.run('consume', never)).catch((e: { code: string }) => [
      e.code,
      performance.now() - started,
    ])
    await later(20, 0)
    // Down after the first timeout, so later calls would be refused: answered calls in between stay answered.
    const answered = guard.run('consume', () => later(5, 'ok'))
    const second = Promise.resolve(guard.run('consume', never)).catch((e: { code: string }) => [
      e.code,
      performance.now() - started,
    ])
    expect(await answered).toBe('ok')
    const [firstCode, firstAt] = (await first) as [string, number]
    const [secondCode, secondAt] = (await second) as [string, number]
    expect(firstCode).toBe('BW_STORE_TIMEOUT')
    expect(secondCode).toBe('BW_STORE_TIMEOUT')
    expect(firstAt).toBeGreaterThanOrEqual(49)
    expect(firstAt).toBeLessThan(300)
    expect(secondAt).toBeGreaterThanOrEqual(69)
    expect(secondAt).toBeLessThan(320)
  })

  it('a reply after the timeout neither resolves the call nor marks the store healthy', async () => {
    const guard = new StoreGuard(20)
    const call = Promise.resolve(guard.run('consume', () => later(40, 'late'))).catch((e: { code: string }) => e.code)
    expect(await call).toBe('BW_STORE_TIMEOUT')
    await later(30, 0)
    expect(guard.down).toBe(true)
  })

  it('keeps many answered calls cheap: no timeout fires for them', async () => {
    const guard = new StoreGuard(30)
    const results = await Promise.all(
      Array.from({ length: 3000 }, (_, i) => guard.run('consume', () => Promise.resolve(i))),
    )
    expect(results[2999]).toBe(2999)
    await later(50, 0)
    expect(guard.down).toBe(false)
    expect(await guard.run('consume', () => Promise.resolve('again'))).toBe('again')
  })
})
