// Refunds (skipSuccessfulRequests / skipFailedRequests) when the store fails: over a real http.Server, with a
// store whose refund step fails or never answers. A lost refund leaves the request counted.

import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createRateLimiter,
  isInvalidOptionError,
  isPromiseLike,
  MemoryRateLimitStore,
  type RateLimiter,
  type RateLimitRefundEvent,
  type RateLimitResult,
  type RateLimitStore,
  type ResolvedRule,
  type StoreErrorEvent,
} from '../src/index.js'
import { until, view } from './helpers.js'

/** A remote-like store whose consume works and whose refund fails, never answers, or works. */
class RefundStore implements RateLimitStore {
  refundMode: 'ok' | 'fail' | 'hang' = 'ok'
  refunds = 0
  readonly inner = new MemoryRateLimitStore()
  consume(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    return Promise.resolve(this.inner.consume(key, rules, cost))
  }
  peek(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    return Promise.resolve(this.inner.peek(key, rules, cost))
  }
  refund(key: string, rules: readonly ResolvedRule[], cost: number, ago: number): Promise<void> {
    this.refunds++
    if (this.refundMode === 'fail') return Promise.reject(new Error('connection reset'))
    if (this.refundMode === 'hang') return new Promise(() => {})
    this.inner.refund(key, rules, cost, ago)
    return Promise.resolve()
  }
  reset(key: string): void {
    this.inner.reset(key)
  }
}

const servers: http.Server[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))))
})

/** A server whose every request goes through `limiter` with its response, answering `?status=N`. */
async function serve(limiter: RateLimiter): Promise<(status: number) => Promise<number>> {
  const server = http.createServer(async (req, res) => {
    let decision = limiter.check(view('192.0.2.7'), res)
    if (isPromiseLike(decision)) decision = await decision
    if (decision.action === 'reject') res.writeHead(decision.status).end()
    else res.writeHead(Number(new URL(req.url ?? '/', 'http://x').searchParams.get('status') ?? 200)).end()
  })
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return async (status) => (await fetch(`http://127.0.0.1:${port}/?status=${status}`)).status
}

function listen<T>(channel: string): { seen: T[]; stop: () => void } {
  const seen: T[] = []
  const listener = (message: unknown) => seen.push(message as T)
  diagnostics.subscribe(channel, listener)
  return { seen, stop: () => diagnostics.unsubscribe(channel, listener) }
}

describe('refunds when the store fails', () => {
  it.each(['fail', 'hang'] as const)(
    'a refund that %ss leaves the request counted, reported as store_error on both channels',
    async (mode) => {
      const store = new RefundStore()
      store.refundMode = mode
      const refunds = listen<RateLimitRefundEvent>('breakwater:rate-limit:refund')
      const errors = listen<StoreErrorEvent>('breakwater:store:error')
      try {
        const limiter = createRateLimiter({
          id: `refund-${mode}`,
          limit: 1,
          windowMs: '1m',
          store,
          storeTimeoutMs: 50,
          skipFailedRequests: true,
        })
        const request = await serve(limiter)
        expect(await request(500)).toBe(500)
        await until(() => refunds.seen.length === 1)
        expect(refunds.seen).toEqual([{ policy: `refund-${mode}`, outcome: 'store_error' }])
        expect(errors.seen).toMatchObject([
          { policy: `refund-${mode}`, operation: 'refund', kind: mode === 'hang' ? 'timeout' : 'error' },
        ])
        // Not retried, and the failed request still counts in the store.
        expect(store.refunds).toBe(1)
        expect(store.inner.peek(`refund-${mode}:192.0.2.7`, ruleOf(), 1).allowed).toBe(false)
      } finally {
        refunds.stop()
        errors.stop()
      }
    },
  )

  it('a refund goes to the fallback store that took the charge while the primary was down', async () => {
    const fallback = new MemoryRateLimitStore()
    const broken: RateLimitStore = {
      consume: () => Promise.reject(new Error('down')),
      peek: () => Promise.reject(new Error('down')),
      refund: () => Promise.reject(new Error('down')),
      reset: () => undefined,
    }
    const limiter = createRateLimiter({
      limit: 1,
      windowMs: '1m',
      store: broken,
      onStoreError: { fallback },
      skipFailedRequests: true,
    })
    const request = await serve(limiter)
    expect(await request(503)).toBe(503)
    await until(() => fallback.peek('rate-limit:192.0.2.7', [...ruleOf()], 1).allowed)
    expect(await request(200)).toBe(200)
  })

  it('refuses a store without refund() when refunds are asked for, naming the option', () => {
    const store: RateLimitStore = {
      consume: (k, r, c) => new MemoryRateLimitStore().consume(k, r, c),
      peek: (k, r, c) => new MemoryRateLimitStore().peek(k, r, c),
      reset: () => undefined,
    }
    let error: unknown
    try {
      createRateLimiter({ limit: 1, windowMs: 1000, store, skipSuccessfulRequests: true })
    } catch (e) {
      error = e
    }
    expect(isInvalidOptionError(error)).toBe(true)
    expect(String((error as Error).message)).toMatch(/"store".*refund/)
    expect(() => createRateLimiter({ limit: 1, windowMs: 1000, skipFailedRequests: 'yes' as never })).toThrow(
      /"skipFailedRequests"/,
    )
  })
})

function ruleOf(): ResolvedRule[] {
  return [{ name: 'default', algorithm: 'gcra', limit: 1, windowMs: 60_000, burst: 1 }]
}
