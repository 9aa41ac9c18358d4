// The rate-limit adapter contract, proved once for Express, Fastify and Koa over real sockets, with the memory
// store and with RedisRateLimitStore: the same scenarios, each framework mounting limits in its own idiom.

import { randomUUID } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ErrorCode,
  type HeaderFormat,
  ProblemType,
  type RateLimitDecisionEvent,
  type RateLimitRefundEvent,
  type RequestView,
} from '@breakwater/core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type AppSpec, FRAMEWORKS, startApp, type TestApp } from './apps.js'
import { headerLines, rawRequest, STORES, type StoreKit, storeKit, until } from './support.js'

const matrix = FRAMEWORKS.flatMap((framework) => STORES.map((store) => [framework, store] as const))
const quiet = () => {}

describe.each(matrix)('%s adapter with the %s store', (framework, storeKind) => {
  let kit: StoreKit
  const apps: TestApp[] = []

  beforeAll(async () => {
    kit = await storeKit(storeKind)
  })
  afterAll(() => kit.close())
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })

  const start = async (spec: AppSpec): Promise<TestApp> => {
    const app = await startApp(framework, spec)
    apps.push(app)
    return app
  }
  const get = (app: TestApp, path: string, headers: Record<string, string> = {}) => fetch(app.url + path, { headers })

  it('lets requests within the limit through with draft-8 RateLimit and RateLimit-Policy headers', async () => {
    const app = await start({ global: kit.with({ limit: 3, windowMs: '1m' }), routes: [{ path: '/items/:id' }] })
    const first = await get(app, '/items/1')
    expect(first.status).toBe(200)
    expect(await first.json()).toMatchObject({ ok: true })
    expect(first.headers.get('ratelimit')).toMatch(/^"default";r=2;t=\d+$/)
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=3;w=60')
    const second = await get(app, '/items/2')
    expect(second.headers.get('ratelimit')).toMatch(/^"default";r=1;t=\d+$/)
    expect(app.handled('GET /items/:id')).toBe(2)
  })

  it('answers 429 problem+json with BW_RATE_LIMITED, violated-policies and Retry-After, without running the handler', async () => {
    const app = await start({ global: kit.with({ limit: 2, windowMs: '1m' }), routes: [{ path: '/items/:id' }] })
    expect((await get(app, '/items/1')).status).toBe(200)
    expect((await get(app, '/items/1')).status).toBe(200)
    const denied = await get(app, '/items/1')
    expect(denied.status).toBe(429)
    expect(denied.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    const retryAfter = Number(denied.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    const [, t] = /^"default";r=0;t=(\d+)$/.exec(denied.headers.get('ratelimit') ?? '') ?? []
    expect(t).toBeDefined()
    expect(retryAfter).toBeGreaterThanOrEqual(Number(t))
    expect(denied.headers.get('ratelimit-policy')).toBe('"default";q=2;w=60')
    const body = (await denied.json()) as { detail: string }
    expect(body).toMatchObject({
      type: ProblemType.QuotaExceeded,
      title: 'Too Many Requests',
      status: 429,
      code: ErrorCode.RateLimited,
      'violated-policies': ['default'],
    })
    expect(body.detail).toMatch(/^Rate limit exceeded; retry in \d+ seconds?\.$/)
    expect(app.handled('GET /items/:id')).toBe(2)
  })

  it('decides several rules together: one item per rule in each field, the violated rule named', async () => {
    const rules = [
      { name: 'burst', limit: 2, windowMs: '1m' },
      { name: 'daily', limit: 100, windowMs: '1d' },
    ]
    const app = await start({ global: kit.with({ rules }), routes: [{ path: '/' }] })
    const first = await get(app, '/')
    expect(first.headers.get('ratelimit')).toMatch(/^"burst";r=1;t=\d+, "daily";r=99;t=\d+$/)
    expect(first.headers.get('ratelimit-policy')).toBe('"burst";q=2;w=60, "daily";q=100;w=86400')
    await get(app, '/')
    const denied = await get(app, '/')
    expect(denied.status).toBe(429)
    expect(await denied.json()).toMatchObject({ 'violated-policies': ['burst'] })
    expect(denied.headers.get('ratelimit')).toMatch(/^"burst";r=0;t=\d+, "daily";r=\d+;t=\d+$/)
  })

  it('applies a per-route limit on its route only, in the framework’s idiom', async () => {
    const app = await start({
      global: kit.with({ id: 'global', name: 'global', limit: 5, windowMs: '1m' }),
      routes: [
        { path: '/strict', limits: [kit.with({ id: 'strict', name: 'strict', limit: 2, windowMs: '1m' })] },
        { path: '/open' },
      ],
    })
    expect((await get(app, '/strict')).status).toBe(200)
    const second = await get(app, '/strict')
    expect(second.headers.get('ratelimit')).toMatch(/"strict";r=0;t=\d+/)
    const denied = await get(app, '/strict')
    expect(denied.status).toBe(429)
    expect(await denied.json()).toMatchObject({ 'violated-policies': ['strict'] })
    const open = await get(app, '/open')
    expect(open.status).toBe(200)
    expect(open.headers.get('ratelimit')).toMatch(/^"global";r=\d;t=\d+$/)
    expect(app.handled('GET /strict')).toBe(2)
    expect(app.handled('GET /open')).toBe(1)
  })

  it('leaves a route exempted from the global limiter unlimited and without headers', async () => {
    const app = await start({
      global: kit.with({ limit: 1, windowMs: '1m' }),
      routes: [{ path: '/health', exempt: true }, { path: '/api' }],
    })
    for (let i = 0; i < 3; i++) {
      const res = await get(app, '/health')
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit')).toBeNull()
    }
    expect((await get(app, '/api')).status).toBe(200)
    expect((await get(app, '/api')).status).toBe(429)
  })

  it('does not count or annotate requests that `skip` returns true for', async () => {
    const skip = (request: RequestView) => request.header('X-Internal') === 'yes'
    const app = await start({ global: kit.with({ limit: 1, windowMs: '1m', skip }), routes: [{ path: '/' }] })
    for (let i = 0; i < 3; i++) {
      const res = await get(app, '/', { 'x-internal': 'yes' })
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit')).toBeNull()
    }
    expect((await get(app, '/')).headers.get('ratelimit')).toMatch(/^"default";r=0;/)
    expect((await get(app, '/')).status).toBe(429)
    expect(app.handled('GET /')).toBe(4)
  })

  it('never limits allowlisted client IPs or keys', async () => {
    const byIp = await start({
      global: kit.with({ limit: 1, windowMs: '1m', allowlist: ['127.0.0.1'] }),
      routes: [{ path: '/' }],
    })
    for (let i = 0; i < 3; i++) {
      const res = await get(byIp, '/')
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit')).toBeNull()
    }
    const byKey = await start({
      global: kit.with({
        limit: 1,
        windowMs: '1m',
        allowlist: ['partner'],
        key: (request) => request.header('x-api-key') ?? 'anonymous',
      }),
      routes: [{ path: '/' }],
    })
    for (let i = 0; i < 3; i++) expect((await get(byKey, '/', { 'x-api-key': 'partner' })).status).toBe(200)
    expect((await get(byKey, '/', { 'x-api-key': 'someone' })).status).toBe(200)
    expect((await get(byKey, '/', { 'x-api-key': 'someone' })).status).toBe(429)
  })

  it('charges `cost` units per request', async () => {
    const cost = (request: RequestView) => Number(request.header('x-cost') ?? '1')
    const app = await start({ global: kit.with({ limit: 5, windowMs: '1m', cost }), routes: [{ path: '/' }] })
    const first = await get(app, '/', { 'x-cost': '2' })
    expect(first.headers.get('ratelimit')).toMatch(/^"default";r=3;/)
    const fits = await get(app, '/', { 'x-cost': '3' })
    expect(fits.status).toBe(200)
    expect(fits.headers.get('ratelimit')).toMatch(/^"default";r=0;/)
    expect((await get(app, '/', { 'x-cost': '1' })).status).toBe(429)
    expect(app.handled('GET /')).toBe(2)
  })

  it('admits a cheaper request that fits after a costlier one was denied', async () => {
    const cost = (request: RequestView) => Number(request.header('x-cost') ?? '1')
    const app = await start({ global: kit.with({ limit: 5, windowMs: '1m', cost }), routes: [{ path: '/' }] })
    expect((await get(app, '/', { 'x-cost': '3' })).status).toBe(200)
    expect((await get(app, '/', { 'x-cost': '3' })).status).toBe(429)
    expect((await get(app, '/', { 'x-cost': '2' })).status).toBe(200)
  })

  it('keys clients with a custom `key` function (here an API key header)', async () => {
    const key = (request: RequestView) => request.header('x-api-key') ?? 'anonymous'
    const app = await start({ global: kit.with({ limit: 1, windowMs: '1m', key }), routes: [{ path: '/' }] })
    expect((await get(app, '/', { 'x-api-key': 'alice' })).status).toBe(200)
    expect((await get(app, '/', { 'x-api-key': 'alice' })).status).toBe(429)
    expect((await get(app, '/', { 'x-api-key': 'bob' })).status).toBe(200)
  })

  it('gives policies the route pattern, method, headers and client IP through the request view', async () => {
    const seen: Array<{ method: string; path: string; ip: string | undefined; header: string | undefined }> = []
    const key = (request: RequestView) => {
      seen.push({ method: request.method, path: request.path, ip: request.ip, header: request.header('X-Trace') })
      return 'one'
    }
    const app = await start({
      routes: [{ path: '/orders/:id', limits: [kit.with({ limit: 5, windowMs: '1m', key })] }],
    })
    expect((await get(app, '/orders/42?x=1', { 'x-trace': 'abc' })).status).toBe(200)
    expect(seen).toEqual([{ method: 'GET', path: '/orders/:id', ip: '127.0.0.1', header: 'abc' }])
  })

  const formats: Array<[HeaderFormat | false, (res: Response) => void]> = [
    [
      'draft-7',
      (res) => {
        expect(res.headers.get('ratelimit')).toMatch(/^limit=2, remaining=1, reset=\d+$/)
        expect(res.headers.get('ratelimit-policy')).toBe('2;w=60')
      },
    ],
    [
      'draft-6',
      (res) => {
        expect(res.headers.get('ratelimit-limit')).toBe('2')
        expect(res.headers.get('ratelimit-remaining')).toBe('1')
        expect(res.headers.get('ratelimit-reset')).toMatch(/^\d+$/)
        expect(res.headers.get('ratelimit-policy')).toBe('2;w=60')
        expect(res.headers.get('ratelimit')).toBeNull()
      },
    ],
    [
      'legacy',
      (res) => {
        expect(res.headers.get('x-ratelimit-limit')).toBe('2')
        expect(res.headers.get('x-ratelimit-remaining')).toBe('1')
        expect(Number(res.headers.get('x-ratelimit-reset'))).toBeGreaterThanOrEqual(Math.floor(Date.now() / 1000))
        expect(res.headers.get('ratelimit')).toBeNull()
      },
    ],
    [
      false,
      (res) => {
        for (const name of ['ratelimit', 'ratelimit-policy', 'ratelimit-limit', 'x-ratelimit-limit']) {
          expect(res.headers.get(name)).toBeNull()
        }
      },
    ],
  ]

  it.each(formats)(
    'writes the %s header format, and Retry-After on 429 whatever the format',
    async (headers, check) => {
      const app = await start({ global: kit.with({ limit: 2, windowMs: '1m', headers }), routes: [{ path: '/' }] })
      const allowed = await get(app, '/')
      expect(allowed.status).toBe(200)
      check(allowed)
      await get(app, '/')
      const denied = await get(app, '/')
      expect(denied.status).toBe(429)
      expect(Number(denied.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(await denied.json()).toMatchObject({ code: ErrorCode.RateLimited })
    },
  )

  it('appends the items of two limiters on one route to the same RateLimit fields', async () => {
    const app = await start({
      routes: [
        {
          path: '/both',
          limits: [
            kit.with({ id: 'per-client', name: 'client', limit: 5, windowMs: '1m' }),
            kit.with({ id: 'per-route', name: 'route', limit: 2, windowMs: '1m', key: () => 'route' }),
          ],
        },
      ],
    })
    const first = await rawRequest(`${app.url}/both`)
    expect(first.status).toBe(200)
    expect(headerLines(first, 'RateLimit')).toEqual([expect.stringMatching(/^"client";r=4;t=\d+, "route";r=1;t=\d+$/)])
    expect(headerLines(first, 'RateLimit-Policy')).toEqual(['"client";q=5;w=60, "route";q=2;w=60'])
    await rawRequest(`${app.url}/both`)
    const denied = await rawRequest(`${app.url}/both`)
    expect(denied.status).toBe(429)
    expect(headerLines(denied, 'RateLimit')).toEqual([expect.stringMatching(/^"client";r=2;t=\d+, "route";r=0;t=\d+$/)])
    expect(headerLines(denied, 'Retry-After')).toHaveLength(1)
    expect(headerLines(denied, 'Content-Type')).toEqual([expect.stringMatching(/^application\/problem\+json/)])
    expect(JSON.parse(denied.body)).toMatchObject({ 'violated-policies': ['route'] })
  })

  it('re-admits a client after reset(key)', async () => {
    const app = await start({ global: kit.with({ limit: 1, windowMs: '1h' }), routes: [{ path: '/' }] })
    expect((await get(app, '/')).status).toBe(200)
    expect((await get(app, '/')).status).toBe(429)
    await app.reset('127.0.0.1')
    const again = await get(app, '/')
    expect(again.status).toBe(200)
    expect(again.headers.get('ratelimit')).toMatch(/^"default";r=0;/)
  })

  it('keys by the proxied client IP when the framework trusts the proxy: IPv6 by /64, IPv4-mapped as IPv4', async () => {
    const app = await start({
      global: kit.with({ limit: 1, windowMs: '1m' }),
      routes: [{ path: '/' }],
      trustProxy: true,
    })
    const from = (ip: string) => get(app, '/', { 'x-forwarded-for': ip }).then((res) => res.status)
    expect(await from('2001:db8:1:2::1')).toBe(200)
    expect(await from('2001:db8:1:2:ffff:ffff:ffff:9')).toBe(429) // same /64
    expect(await from('2001:db8:1:3::1')).toBe(200) // next /64
    expect(await from('203.0.113.9')).toBe(200)
    expect(await from('::ffff:203.0.113.9')).toBe(429) // the same client through a dual-stack socket
    expect(await from('::ffff:cb00:710a')).toBe(200) // 203.0.113.10, written in hex
    expect(await from('203.0.113.10')).toBe(429)
  })

  it('ignores X-Forwarded-For when the framework does not trust proxies', async () => {
    const app = await start({ global: kit.with({ limit: 1, windowMs: '1m' }), routes: [{ path: '/' }] })
    expect((await get(app, '/', { 'x-forwarded-for': '198.51.100.1' })).status).toBe(200)
    expect((await get(app, '/', { 'x-forwarded-for': '198.51.100.2' })).status).toBe(429)
  })

  it('never answers 500 or crashes on malformed X-Forwarded-For values or huge keys', async () => {
    const app = await start({
      global: kit.with({ limit: 1000, windowMs: '1m', logger: quiet }),
      routes: [
        { path: '/' },
        {
          path: '/keyed',
          limits: [kit.with({ id: 'keyed', limit: 1, windowMs: '1m', key: (r) => r.header('x-api-key') ?? 'none' })],
        },
      ],
      trustProxy: true,
    })
    const garbage = [
      'garbage',
      ', ,',
      ',',
      '[::1]:443',
      '999.999.999.999',
      '::ffff:',
      'fe80::1%eth0',
      '1.2.3.4, junk',
      '%%%',
      'x'.repeat(8000),
    ]
    for (const value of garbage) {
      const res = await get(app, '/', { 'x-forwarded-for': value })
      expect(res.status, `X-Forwarded-For: ${value.slice(0, 40)}`).toBe(200)
    }
    const huge = 'k'.repeat(12_000)
    expect((await get(app, '/keyed', { 'x-api-key': huge })).status).toBe(200)
    expect((await get(app, '/keyed', { 'x-api-key': huge })).status).toBe(429)
    expect((await get(app, '/keyed', { 'x-api-key': `${huge.slice(1)}j` })).status).toBe(200)
    expect(app.errors).toEqual([])
  })

  it('gives requests without a client IP (a Unix socket) one shared bucket, never a 500', async () => {
    const socketPath = join(tmpdir(), `bw-${randomUUID().slice(0, 8)}.sock`)
    const app = await start({
      global: kit.with({ limit: 2, windowMs: '1m', logger: quiet }),
      routes: [{ path: '/' }],
      socketPath,
    })
    expect((await rawRequest(`${app.url}/`, { socketPath })).status).toBe(200)
    expect((await rawRequest(`${app.url}/`, { socketPath })).status).toBe(200)
    expect((await rawRequest(`${app.url}/`, { socketPath })).status).toBe(429)
    expect(app.errors).toEqual([])
  })

  it('rejects before the body is parsed: a limited POST with invalid JSON gets 429, not 400', async () => {
    const app = await start({
      global: kit.with({ limit: 1, windowMs: '1m' }),
      routes: [{ method: 'POST', path: '/orders' }],
    })
    const post = () =>
      fetch(`${app.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"oops' })
    expect((await post()).status).toBe(400) // allowed, so the body parser saw it
    const denied = await post()
    expect(denied.status).toBe(429)
    expect(await denied.json()).toMatchObject({ code: ErrorCode.RateLimited })
    const ok = await fetch(`${app.url}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(ok.status).toBe(429)
    expect(app.handled('POST /orders')).toBe(0)
  })

  it.each([
    [
      'throws',
      () => {
        throw new Error('key exploded')
      },
    ],
    [
      'rejects',
      async () => {
        throw new Error('key exploded')
      },
    ],
  ] as const)('routes a `key` function that %s to the framework’s error path without crashing', async (_, key) => {
    const app = await start({
      global: kit.with({ limit: 5, windowMs: '1m', key }),
      routes: [{ path: '/health', exempt: true }, { path: '/api' }],
    })
    expect((await get(app, '/api')).status).toBe(500)
    expect(app.errors.map((e) => e.message)).toEqual(['key exploded'])
    expect(app.handled('GET /api')).toBe(0)
    expect((await get(app, '/health')).status).toBe(200)
  })

  /** Events of the limiter `id` on `channel` published from now on. */
  const eventsOf = <T extends { policy: string }>(channel: string, id: string) => {
    const events: T[] = []
    const listener = (message: unknown) => {
      if ((message as T).policy === id) events.push(message as T)
    }
    diagnostics.subscribe(channel, listener)
    return { events, stop: () => diagnostics.unsubscribe(channel, listener) }
  }
  /** Refund outcomes of the limiter `id` (refunds land after the response is out). */
  const refundsOf = (id: string) => {
    const { events, stop } = eventsOf<RateLimitRefundEvent>('breakwater:rate-limit:refund', id)
    return {
      get seen() {
        return events.map((e) => e.outcome)
      },
      stop,
    }
  }

  /** A request that the client abandons once the handler is holding it. */
  const abandon = async (app: TestApp, path: string, route: string) => {
    const before = app.handled(route)
    const request = http.get(`${app.url}${path}?hold=1`, { agent: false })
    request.on('error', () => {})
    await until(() => app.handled(route) === before + 1)
    request.destroy()
  }

  it('skipFailedRequests: 4xx and 5xx responses give their charge back, successful ones count', async () => {
    const id = `skip-failed-${randomUUID().slice(0, 8)}`
    const refunds = refundsOf(id)
    try {
      const app = await start({
        global: kit.with({ id, limit: 2, windowMs: '1m', skipFailedRequests: true }),
        routes: [{ path: '/login' }],
      })
      for (const status of [401, 500, 404]) expect((await get(app, `/login?status=${status}`)).status).toBe(status)
      await until(() => refunds.seen.length === 3)
      expect(refunds.seen).toEqual(['refunded', 'refunded', 'refunded'])
      expect((await get(app, '/login')).status).toBe(200)
      const second = await get(app, '/login')
      expect(second.status).toBe(200)
      // One refund per failed request, never two: two successes used exactly the quota of two.
      expect(second.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/)
      expect((await get(app, '/login')).status).toBe(429)
      expect(app.handled('GET /login')).toBe(5)
    } finally {
      refunds.stop()
    }
  })

  it('skipSuccessfulRequests: only failed responses count (e.g. failed logins)', async () => {
    const id = `skip-ok-${randomUUID().slice(0, 8)}`
    const refunds = refundsOf(id)
    try {
      const app = await start({
        global: kit.with({ id, limit: 2, windowMs: '1m', skipSuccessfulRequests: true }),
        routes: [{ path: '/login' }],
      })
      for (let i = 0; i < 3; i++) expect((await get(app, '/login?status=204')).status).toBe(204)
      await until(() => refunds.seen.length === 3)
      expect((await get(app, '/login?status=401')).status).toBe(401)
      expect((await get(app, '/login?status=401')).status).toBe(401)
      expect((await get(app, '/login?status=401')).status).toBe(429)
      // A success while limited is still refused: the charge comes first, the refund after the response.
      expect((await get(app, '/login')).status).toBe(429)
    } finally {
      refunds.stop()
    }
  })

  it('a custom requestFailed decides what counts as failed', async () => {
    const id = `failed-fn-${randomUUID().slice(0, 8)}`
    const refunds = refundsOf(id)
    try {
      const app = await start({
        global: kit.with({
          id,
          limit: 1,
          windowMs: '1m',
          skipFailedRequests: true,
          // A 404 is an ordinary answer here; only server errors count as failed.
          requestFailed: (_request: RequestView, status: number) => status >= 500,
        }),
        routes: [{ path: '/items' }],
      })
      expect((await get(app, '/items?status=503')).status).toBe(503)
      await until(() => refunds.seen.length === 1)
      expect((await get(app, '/items?status=404')).status).toBe(404)
      expect((await get(app, '/items')).status).toBe(429)
    } finally {
      refunds.stop()
    }
  })

  it('an aborted response counts as failed: given back under skipFailedRequests, counted under skipSuccessfulRequests', async () => {
    const failedId = `abort-failed-${randomUUID().slice(0, 8)}`
    const okId = `abort-ok-${randomUUID().slice(0, 8)}`
    const refunds = refundsOf(failedId)
    try {
      const app = await start({
        routes: [
          { path: '/failed', limits: [kit.with({ id: failedId, limit: 1, windowMs: '1m', skipFailedRequests: true })] },
          { path: '/ok', limits: [kit.with({ id: okId, limit: 1, windowMs: '1m', skipSuccessfulRequests: true })] },
        ],
      })
      await abandon(app, '/failed', 'GET /failed')
      await until(() => refunds.seen.length === 1)
      expect((await get(app, '/failed')).status).toBe(200)
      await abandon(app, '/ok', 'GET /ok')
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect((await get(app, '/ok')).status).toBe(429)
    } finally {
      refunds.stop()
    }
  })

  it('dryRun lets over-limit requests through and reports them as limited with dryRun: true', async () => {
    const id = `dry-${randomUUID().slice(0, 8)}`
    const { events: seen, stop } = eventsOf<RateLimitDecisionEvent>('breakwater:rate-limit:decision', id)
    try {
      const app = await start({
        global: kit.with({ id, limit: 1, windowMs: '1m', dryRun: true }),
        routes: [{ path: '/' }],
      })
      for (let i = 0; i < 3; i++) {
        const res = await get(app, '/')
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit')).toBeNull()
        expect(res.headers.get('retry-after')).toBeNull()
      }
      expect(app.handled('GET /')).toBe(3)
      expect(seen.map((e) => [e.outcome, e.dryRun])).toEqual([
        ['allowed', true],
        ['limited', true],
        ['limited', true],
      ])
    } finally {
      stop()
    }
  })

  it('aborts the request signal when the client goes away, and only then', async () => {
    const signals: AbortSignal[] = []
    const waitForAbort = (request: RequestView) => {
      signals.push(request.signal)
      return new Promise<string>((resolve) => request.signal.addEventListener('abort', () => resolve('gone')))
    }
    const record = (request: RequestView) => {
      signals.push(request.signal)
      return 'present'
    }
    const app = await start({
      routes: [
        { path: '/hang', limits: [kit.with({ id: 'hang', limit: 5, windowMs: '1m', key: waitForAbort })] },
        { path: '/quick', limits: [kit.with({ id: 'quick', limit: 5, windowMs: '1m', key: record })] },
      ],
    })
    const request = http.get(`${app.url}/hang`, { agent: false })
    request.on('error', () => {})
    await until(() => signals.length === 1)
    expect(signals[0]?.aborted).toBe(false)
    request.destroy()
    await until(() => signals[0]?.aborted === true)
    expect((await get(app, '/quick')).status).toBe(200)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(signals[1]?.aborted).toBe(false)
  })
})
