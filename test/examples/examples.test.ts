// Black-box check of the example apps (examples/<framework>/src/server.js): each is started as its own process
// on a free port, against the built packages, with the memory store and with Redis, and must honour the
// example contract of ARCHITECTURE.md for the routes that exist so far.

import { randomInt } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startUpstream } from '../outbound/upstream.js'
import { testRedisUrl } from '../support/redis-server.js'
import { FRAMEWORKS, startExample, useExamples } from './example-process.js'

const STORES = ['memory', 'redis'] as const

useExamples()

const randomIPv4 = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`

describe.each(FRAMEWORKS.flatMap((framework) => STORES.map((store) => [framework, store] as const)))(
  'examples/%s with the %s store',
  (framework, store) => {
    it('serves the example contract: /, /api/limited (5 per 10 s, then 429), /debug/stats, and exits on SIGTERM', async () => {
      // With Redis the apps share one server, so the client is a fresh proxied address: TRUST_PROXY is on.
      // With memory no proxy is trusted, and X-Forwarded-For must then be ignored.
      const env = store === 'redis' ? { REDIS_URL: testRedisUrl(), TRUST_PROXY: 'true' } : {}
      const example = await startExample(framework, env)
      expect(example.output()).toMatch(
        new RegExp(`^listening on ${example.url.replaceAll('.', '\\.')} \\(store: ${store}\\)$`, 'm'),
      )

      const home = await fetch(`${example.url}/`)
      expect(home.status).toBe(200)
      expect(await home.text()).toBe('ok')

      const client = randomIPv4()
      const limited = (forwardedFor = client) =>
        fetch(`${example.url}/api/limited`, { headers: { 'x-forwarded-for': forwardedFor } })
      for (let i = 0; i < 5; i++) {
        const res = await limited(store === 'memory' ? randomIPv4() : client)
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit')).toMatch(new RegExp(`^"default";r=${4 - i};t=\\d+$`))
        expect(res.headers.get('ratelimit-policy')).toBe('"default";q=5;w=10')
      }
      const denied = await limited(store === 'memory' ? randomIPv4() : client)
      expect(denied.status).toBe(429)
      expect(denied.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/)
      expect(denied.headers.get('ratelimit-policy')).toBe('"default";q=5;w=10')
      expect(Number(denied.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(denied.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await denied.json()).toMatchObject({ status: 429, code: 'BW_RATE_LIMITED' })
      if (store === 'redis') expect((await limited(randomIPv4())).status).toBe(200) // another proxied client

      const stats = await fetch(`${example.url}/debug/stats`)
      expect(await stats.json()).toEqual({
        ordersExecuted: 0,
        limitedExecuted: store === 'redis' ? 6 : 5,
        limitedRejected: 1,
        slowStarted: 0,
        slowAborted: 0,
        slowCompleted: 0,
        workStarted: 0,
      })

      const exited = new Promise<number | null>((resolve) => example.child.once('exit', resolve))
      example.child.kill('SIGTERM')
      expect(await exited).toBe(0)
    })
  },
)

describe.each(FRAMEWORKS)('examples/%s timeouts', (framework) => {
  it('GET /api/slow answers within its 200 ms budget, else 503 at the deadline with the wait cancelled', async () => {
    const example = await startExample(framework, {})
    const quick = await fetch(`${example.url}/api/slow?ms=20`)
    expect(quick.status).toBe(200)
    expect(await quick.json()).toEqual({ waitedMs: 20 })

    const started = performance.now()
    const slow = await fetch(`${example.url}/api/slow?ms=2000`)
    const elapsed = performance.now() - started
    expect(slow.status).toBe(503)
    expect(slow.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(await slow.json()).toMatchObject({ status: 503, code: 'BW_TIMEOUT' })
    expect(elapsed).toBeGreaterThanOrEqual(195)
    expect(elapsed).toBeLessThan(1_000) // cut off at the deadline, not after the 2 s the handler asked for

    const stats = await (await fetch(`${example.url}/debug/stats`)).json()
    expect(stats).toMatchObject({ slowStarted: 2, slowAborted: 1, slowCompleted: 1 })
  })
})

describe.each(FRAMEWORKS)('examples/%s load shedding', (framework) => {
  it('GET /api/work runs 4 at a time and sheds the rest at once with 503 + Retry-After; accepted work stays fast', async () => {
    const example = await startExample(framework, {})
    const quick = await fetch(`${example.url}/api/work?ms=10`)
    expect(quick.status).toBe(200)
    expect(await quick.json()).toEqual({ workedMs: 10 })

    const started = performance.now()
    const burst = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const response = await fetch(`${example.url}/api/work?ms=400`)
        const body = await response.json()
        return { response, body, ms: performance.now() - started }
      }),
    )
    const ok = burst.filter((r) => r.response.status === 200)
    const shed = burst.filter((r) => r.response.status === 503)
    expect(ok).toHaveLength(4)
    expect(shed).toHaveLength(8)
    for (const { response, body, ms } of shed) {
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(body).toMatchObject({ status: 503, code: 'BW_OVERLOADED' })
      expect(ms).toBeLessThan(350) // turned away at once, not after queueing behind the work
    }
    for (const { ms } of ok) expect(ms).toBeLessThan(1_200) // the accepted work ran at its own pace

    const stats = await (await fetch(`${example.url}/debug/stats`)).json()
    expect(stats).toMatchObject({ workStarted: 5 }) // shed requests never reached the handler
  })
})

describe.each(FRAMEWORKS)('examples/%s health and shutdown', (framework) => {
  it('serves /livez, /readyz, /startupz as application/health+json (details with HEALTH_TOKEN), and drains on SIGTERM', async () => {
    const example = await startExample(framework, { HEALTH_TOKEN: 'ops', SHUTDOWN_DRAIN_MS: '600' })
    for (const path of ['/livez', '/readyz', '/startupz']) {
      const probe = await fetch(`${example.url}${path}`)
      expect(probe.status).toBe(200)
      expect(probe.headers.get('content-type')).toMatch(/^application\/health\+json/)
      expect(probe.headers.get('cache-control')).toBe('no-store')
      expect(await probe.json()).toEqual({ status: 'pass' })
      expect((await fetch(`${example.url}${path}`, { method: 'HEAD' })).status).toBe(200)
    }
    const detailed = await fetch(`${example.url}/readyz`, { headers: { authorization: 'Bearer ops' } })
    const body = (await detailed.json()) as { checks: Record<string, unknown> }
    expect(Object.keys(body.checks).sort()).toEqual([
      'eventloop:delay',
      'heap:utilization',
      'lifecycle:state',
      'overload:inflight',
    ])

    const exited = new Promise<number | null>((resolve) => example.child.once('exit', resolve))
    const signalled = performance.now()
    example.child.kill('SIGTERM')
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect((await fetch(`${example.url}/readyz`)).status).toBe(503) // draining: still answering, not ready
    expect(await exited).toBe(0)
    expect(performance.now() - signalled).toBeGreaterThanOrEqual(590)
    expect(example.output()).toMatch(/shutdown: draining[\s\S]*shutdown: closing[\s\S]*shutdown: exit .*\(exit 0\)/)
  })
})

describe.each(FRAMEWORKS.flatMap((framework) => STORES.map((store) => [framework, store] as const)))(
  'examples/%s idempotency with the %s store',
  (framework, store) => {
    it('POST /api/orders executes once per Idempotency-Key and caller, replays retries, 409s in-flight duplicates', async () => {
      const example = await startExample(framework, store === 'redis' ? { REDIS_URL: testRedisUrl() } : {})
      // Keys unique to this run: with Redis, every example app shares one key space.
      const key = (label: string) => `${label}-${framework}-${randomInt(1e9)}`
      const order = (idempotencyKey: string | undefined, body: unknown, user = 'alice', query = '') =>
        fetch(`${example.url}/api/orders${query}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${user}`,
            ...(idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey }),
          },
          body: JSON.stringify(body),
        })

      const missing = await order(undefined, { item: 'book' })
      expect(missing.status).toBe(400)
      expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await missing.json()).toMatchObject({ status: 400, code: 'BW_IDEMPOTENCY_KEY_MISSING' })

      const k1 = key('retry')
      const first = await order(`"${k1}"`, { item: 'book' })
      expect(first.status).toBe(201)
      const created = (await first.json()) as { id: string; order: unknown }
      expect(created).toEqual({ id: expect.any(String), order: { item: 'book' } })
      const retry = await order(`"${k1}"`, { item: 'book' })
      expect(retry.status).toBe(201)
      expect(retry.headers.get('idempotent-replayed')).toBe('true')
      expect(await retry.json()).toEqual(created)
      const mismatch = await order(`"${k1}"`, { item: 'lamp' })
      expect(mismatch.status).toBe(422)
      expect(await mismatch.json()).toMatchObject({ code: 'BW_IDEMPOTENCY_MISMATCH' })
      const otherCaller = await order(`"${k1}"`, { item: 'book' }, 'bob')
      expect(otherCaller.status).toBe(201)
      expect(((await otherCaller.json()) as { id: string }).id).not.toBe(created.id)

      const k2 = key('burst')
      const burst = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const response = await order(`"${k2}"`, { item: 'pen' }, 'alice', '?delayMs=300')
          return { status: response.status, body: (await response.json()) as { id?: string; code?: string } }
        }),
      )
      const executed = burst.filter((r) => r.status === 201)
      expect(executed).toHaveLength(1)
      for (const r of burst.filter((r) => r.status !== 201)) {
        expect(r).toMatchObject({ status: 409, body: { code: 'BW_IDEMPOTENCY_IN_PROGRESS' } })
      }
      const afterBurst = await order(`"${k2}"`, { item: 'pen' })
      expect(afterBurst.headers.get('idempotent-replayed')).toBe('true')
      expect(((await afterBurst.json()) as { id: string }).id).toBe(executed[0]!.body.id)

      const stats = await (await fetch(`${example.url}/debug/stats`)).json()
      expect(stats).toMatchObject({ ordersExecuted: 3 })
    })
  },
)

describe.each(FRAMEWORKS)('examples/%s outbound routes', (framework) => {
  it('GET /api/upstream/* call UPSTREAM_URL through their own breaker and bulkhead, with the contract’s answers', async () => {
    const upstream = await startUpstream()
    try {
      const example = await startExample(framework, { UPSTREAM_URL: upstream.url })
      const inventory = await fetch(`${example.url}/api/upstream/inventory?sku=42`)
      expect(inventory.status).toBe(200)
      expect(await inventory.json()).toEqual({ source: 'upstream', data: { items: ['inventory'], query: '?sku=42' } })
      // Every attempt carries how long the caller still waits: at most the 300 ms attempt timeout.
      expect(upstream.timeoutHeaders.map(Number).every((ms) => ms > 0 && ms <= 300)).toBe(true)
      upstream.jsonStatus = 500
      for (let i = 0; i < 5; i++) {
        const failed = await fetch(`${example.url}/api/upstream/inventory`)
        expect(failed.status).toBe(502)
        expect(await failed.json()).toMatchObject({ status: 502, code: 'BW_UPSTREAM_FAILED' })
      }
      const calls = upstream.calls.get('/inventory')
      const open = await fetch(`${example.url}/api/upstream/inventory`)
      expect(open.status).toBe(503)
      expect(open.headers.get('retry-after')).toBe('1')
      expect(open.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await open.json()).toMatchObject({ status: 503, code: 'BW_CIRCUIT_OPEN' })
      expect(upstream.calls.get('/inventory')).toBe(calls) // not called while open
      // recommendations has its own breaker: still calling, and falling back on failure.
      const fallback = await fetch(`${example.url}/api/upstream/recommendations`)
      expect(await fallback.json()).toEqual({ source: 'fallback', data: { items: [] } })
      upstream.jsonStatus = 200
      const recommended = await fetch(`${example.url}/api/upstream/recommendations`)
      expect(await recommended.json()).toMatchObject({ source: 'upstream' })
      const stats = (await (await fetch(`${example.url}/debug/stats`)).json()) as { dependencies: unknown }
      expect(stats.dependencies).toEqual({
        inventory: {
          upstreamAttempts: 6,
          upstreamStale: 0,
          upstreamFallback: 0,
          circuitRejected: 1,
          bulkheadRejected: 0,
        },
        recommendations: {
          upstreamAttempts: 2,
          upstreamStale: 0,
          upstreamFallback: 1,
          circuitRejected: 0,
          bulkheadRejected: 0,
        },
      })
    } finally {
      await upstream.close()
    }
  })
})
