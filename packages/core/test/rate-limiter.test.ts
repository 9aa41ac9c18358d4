import diagnostics from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createRateLimiter,
  type Decision,
  ErrorCode,
  isInvalidOptionError,
  isPromiseLike,
  MemoryRateLimitStore,
  type RateLimitDecisionEvent,
  type RateLimiter,
  type RateLimitResult,
  type RateLimitStore,
  type RequestView,
  type ResolvedRule,
  type StoreErrorEvent,
} from '../src/index.js'
import { view } from './helpers.js'

/** A decision that must be synchronous (memory store, synchronous options). */
function check(limiter: RateLimiter, request: RequestView): Decision {
  const decision = limiter.check(request)
  if (isPromiseLike(decision)) throw new Error('expected a synchronous decision')
  return decision
}

const header = (decision: Decision, name: string): string | undefined =>
  decision.headers?.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v)[0]

/** A remote-like store that answers later, fails, or never answers. */
class ScriptedStore implements RateLimitStore {
  mode: 'ok' | 'fail' | 'hang' | 'slow' = 'ok'
  calls = 0
  readonly inner = new MemoryRateLimitStore()
  consume(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    this.calls++
    if (this.mode === 'fail') return Promise.reject(new Error('connection refused'))
    if (this.mode === 'hang') return new Promise(() => {})
    const result = this.inner.consume(key, rules, cost)
    if (this.mode === 'slow') return new Promise((resolve) => setTimeout(() => resolve(result), 300))
    return Promise.resolve(result)
  }
  peek(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    return Promise.resolve(this.inner.peek(key, rules, cost))
  }
  reset(key: string): void {
    this.inner.reset(key)
  }
}

describe('options', () => {
  it.each([
    [{ limit: 0, windowMs: 1000 }, /"limit".*got 0/],
    [{ limit: 5 }, /"windowMs".*got undefined/],
    [{ limit: 5, windowMs: '10 parsecs' }, /"windowMs".*"10 parsecs"/],
    [{ limit: 5, windowMs: -1 }, /"windowMs".*-1/],
    [{ limit: 5, windowMs: 1000, algorithm: 'leaky' }, /"algorithm".*"leaky"/],
    [{ limit: 5, windowMs: 1000, algorithm: 'fixed-window', burst: 2 }, /"burst"/],
    [{ rules: [] }, /"limit"/],
    [{ rules: [{ name: 'Bad Name', limit: 1, windowMs: 1 }] }, /"rules\[0\]\.name".*"Bad Name"/],
    [
      {
        rules: [
          { name: 'a', limit: 1, windowMs: 1 },
          { name: 'a', limit: 2, windowMs: 1 },
        ],
      },
      /"rules\[1\]\.name".*unique/,
    ],
    [{ limit: 5, windowMs: 1000, headers: 'draft-99' }, /"headers".*"draft-99"/],
    [{ limit: 5, windowMs: 1000, onStoreError: 'ignore' }, /"onStoreError".*"ignore"/],
    [{ limit: 5, windowMs: 1000, ipv6Subnet: 200 }, /"ipv6Subnet".*200/],
    [{ limit: 5, windowMs: 1000, cost: -1 }, /"cost".*-1/],
    [{ limit: 5, windowMs: 1000, statusCode: 200 }, /"statusCode".*200/],
    [{ limit: 5, windowMs: 1000, store: {} }, /"store"/],
    [{ limit: 5, windowMs: 1000, key: 'ip' }, /"key".*"ip"/],
    [{ limit: 5, windowMs: 1000, allowlist: '1.2.3.4' }, /"allowlist"/],
  ])('rejects %j at construction', (options, message) => {
    let thrown: unknown
    try {
      createRateLimiter(options as never)
    } catch (error) {
      thrown = error
    }
    expect(isInvalidOptionError(thrown)).toBe(true)
    expect((thrown as Error).message).toMatch(message)
    expect((thrown as { code: string }).code).toBe(ErrorCode.InvalidOption)
  })

  it('accepts duration strings', () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m' })
    expect(check(limiter, view())).toMatchObject({ action: 'continue' })
  })
})

describe('decisions', () => {
  it('answers synchronously on the memory store', () => {
    expect(isPromiseLike(createRateLimiter({ limit: 1, windowMs: 1000 }).check(view()))).toBe(false)
  })

  it('rejects with a quota-exceeded problem naming the violated policies and Retry-After', () => {
    const limiter = createRateLimiter({
      rules: [
        { name: 'burst', limit: 1, windowMs: '1s' },
        { name: 'daily', limit: 1000, windowMs: '1d' },
      ],
    })
    check(limiter, view())
    const decision = check(limiter, view())
    expect(decision.action).toBe('reject')
    if (decision.action !== 'reject') return
    expect(decision.status).toBe(429)
    expect(decision.body).toMatchObject({
      type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
      status: 429,
      code: 'BW_RATE_LIMITED',
      'violated-policies': ['burst'],
    })
    expect(header(decision, 'Retry-After')).toBe('1')
    expect(header(decision, 'Content-Type')).toBe('application/problem+json')
    expect(header(decision, 'RateLimit')).toBe('"burst";r=0;t=1, "daily";r=999;t=87')
    expect(header(decision, 'RateLimit-Policy')).toBe('"burst";q=1;w=1, "daily";q=1000;w=86400')
  })

  it.each([
    ['draft-8', { RateLimit: '"default";r=2;t=20', 'RateLimit-Policy': '"default";q=3;w=60' }],
    ['draft-7', { RateLimit: 'limit=3, remaining=2, reset=20', 'RateLimit-Policy': '3;w=60' }],
    [
      'draft-6',
      { 'RateLimit-Policy': '3;w=60', 'RateLimit-Limit': '3', 'RateLimit-Remaining': '2', 'RateLimit-Reset': '20' },
    ],
    ['legacy', { 'X-RateLimit-Limit': '3', 'X-RateLimit-Remaining': '2' }],
  ] as const)('writes %s headers', (format, expected) => {
    const decision = check(createRateLimiter({ limit: 3, windowMs: '1m', headers: format }), view())
    for (const [name, value] of Object.entries(expected)) expect(header(decision, name)).toBe(value)
    if (format === 'legacy') {
      const reset = Number(header(decision, 'X-RateLimit-Reset'))
      expect(reset).toBeGreaterThan(Date.now() / 1000)
      expect(reset).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 21)
    }
  })

  it('writes the same draft-8 fields for one rule whether a request is allowed, denied or partitioned', () => {
    const limiter = createRateLimiter({ limit: 2, windowMs: '1m', partitionKey: false })
    const fields = (decision: Decision) => [header(decision, 'RateLimit'), header(decision, 'RateLimit-Policy')]
    expect(fields(check(limiter, view()))).toEqual(['"default";r=1;t=30', '"default";q=2;w=60'])
    expect(fields(check(limiter, view()))).toEqual(['"default";r=0;t=60', '"default";q=2;w=60'])
    expect(fields(check(limiter, view()))).toEqual(['"default";r=0;t=30', '"default";q=2;w=60']) // denied
    const both = createRateLimiter({ limit: 2, windowMs: '1m', headers: ['draft-8', 'legacy'] })
    expect(header(check(both, view()), 'RateLimit')).toBe('"default";r=1;t=30')
    const partitioned = createRateLimiter({ limit: 2, windowMs: '1m', partitionKey: true })
    expect(header(check(partitioned, view()), 'RateLimit')).toBe('"default";r=1;t=30')
    expect(header(check(partitioned, view()), 'RateLimit-Policy')).toMatch(/^"default";q=2;w=60;pk=:[A-Za-z0-9+/=]+:$/)
  })

  it('sends no headers with headers: false but still Retry-After on rejection', () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', headers: false })
    expect(check(limiter, view()).headers).toBeUndefined()
    const denied = check(limiter, view())
    expect(denied.headers?.map(([n]) => n)).toEqual(['Retry-After', 'Content-Type'])
  })

  it('adds a partition key that is a digest, never the raw client key', () => {
    const limiter = createRateLimiter({ limit: 3, windowMs: '1m', partitionKey: true })
    const policy = header(check(limiter, view('198.51.100.23')), 'RateLimit-Policy') ?? ''
    expect(policy).toMatch(/^"default";q=3;w=60;pk=:[A-Za-z0-9+/]+=*:$/)
    expect(policy).not.toContain('198.51.100.23')
    expect(Buffer.from(policy.split(':')[1] ?? '', 'base64').toString()).not.toContain('198')
  })

  it('keys IPv6 clients by /64 and IPv4-mapped addresses as IPv4', () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m' })
    expect(check(limiter, view('2001:db8:0:1::1')).action).toBe('continue')
    expect(check(limiter, view('2001:db8:0:1::2')).action).toBe('reject')
    expect(check(limiter, view('2001:db8:0:2::1')).action).toBe('continue')
    expect(check(limiter, view('::ffff:192.0.2.9')).action).toBe('continue')
    expect(check(limiter, view('192.0.2.9')).action).toBe('reject')
  })

  it('shares one key for requests without an IP and warns once', () => {
    const warnings: string[] = []
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', logger: (w) => warnings.push(w.code) })
    expect(check(limiter, view(undefined)).action).toBe('continue')
    expect(check(limiter, view(undefined)).action).toBe('reject')
    expect(warnings.filter((c) => c === 'BW_RATE_LIMIT_NO_CLIENT_IP').length).toBeLessThanOrEqual(1)
  })

  it('uses a custom (async) key, a cost function and per-request limits', async () => {
    const limiter = createRateLimiter({
      limit: (req) => (req.header('x-plan') === 'pro' ? 10 : 2),
      windowMs: '1m',
      key: async (req) => req.header('x-user') ?? 'anon',
      cost: (req) => (req.header('x-heavy') ? 2 : 1),
    })
    const user = (name: string, extra: Record<string, string> = {}) => view('192.0.2.1', { 'x-user': name, ...extra })
    expect((await limiter.check(user('ann', { 'x-heavy': '1' }))).action).toBe('continue')
    expect((await limiter.check(user('ann'))).action).toBe('reject')
    expect((await limiter.check(user('bob', { 'x-plan': 'pro', 'x-heavy': '1' }))).action).toBe('continue')
    expect(header(await limiter.check(user('bob', { 'x-plan': 'pro' })), 'RateLimit')).toBe('"default";r=7;t=18')
  })

  it('skips requests and allowlisted clients without counting them', async () => {
    const limiter = createRateLimiter({
      limit: 1,
      windowMs: '1m',
      skip: (req) => req.header('x-health') === '1',
      allowlist: ['192.0.2.50'],
    })
    for (let i = 0; i < 3; i++) {
      expect(check(limiter, view('192.0.2.1', { 'x-health': '1' }))).toBe(check(limiter, view('192.0.2.50')))
    }
    expect(check(limiter, view('192.0.2.1')).action).toBe('continue')
    expect(check(limiter, view('192.0.2.1')).action).toBe('reject')
  })

  it('reset re-admits a client and peek does not charge', async () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1h' })
    check(limiter, view('192.0.2.7'))
    expect((await limiter.peek('192.0.2.7')).allowed).toBe(false)
    await limiter.reset('192.0.2.7')
    expect((await limiter.peek('192.0.2.7')).allowed).toBe(true)
    expect((await limiter.consume('192.0.2.7')).allowed).toBe(true)
    expect((await limiter.consume('192.0.2.7')).allowed).toBe(false)
  })

  it('limiters with different ids on one store keep separate counts', () => {
    const store = new MemoryRateLimitStore()
    const a = createRateLimiter({ id: 'a', limit: 1, windowMs: '1m', store })
    const b = createRateLimiter({ id: 'b', limit: 1, windowMs: '1m', store })
    expect(check(a, view()).action).toBe('continue')
    expect(check(b, view()).action).toBe('continue')
    expect(check(a, view()).action).toBe('reject')
  })

  it('keeps every client’s count when more clients come than its cache of store keys holds', async () => {
    const store = new MemoryRateLimitStore()
    const limiter = createRateLimiter({ id: 'many', limit: 1, windowMs: '1m', store })
    const clients = Array.from({ length: 5_000 }, (_, i) => `198.51.${i >> 8}.${i & 255}`)
    for (const ip of clients) expect(check(limiter, view(ip)).action).toBe('continue')
    for (const ip of [clients[0], clients[4_095], clients[4_096], clients[4_999]]) {
      expect(check(limiter, view(ip)).action).toBe('reject')
    }
    expect(store.size).toBe(5_000)
    expect((await limiter.peek('198.51.0.0')).allowed).toBe(false) // the same key reached without the cache
  })
})

describe('events', () => {
  const subscriptions: Array<[string, (message: unknown) => void]> = []
  const subscribe = (name: string, fn: (message: unknown) => void) => {
    diagnostics.subscribe(name, fn)
    subscriptions.push([name, fn])
  }
  afterEach(() => {
    for (const [name, fn] of subscriptions.splice(0)) diagnostics.unsubscribe(name, fn)
  })

  it('publishes each decision with a hashed key, never the raw one', () => {
    const events: RateLimitDecisionEvent[] = []
    subscribe('breakwater:rate-limit:decision', (m) => events.push(m as RateLimitDecisionEvent))
    const limiter = createRateLimiter({ id: 'api', limit: 1, windowMs: '1m' })
    check(limiter, view('203.0.113.99'))
    check(limiter, view('203.0.113.99'))
    expect(events.map((e) => [e.policy, e.outcome, e.violated])).toEqual([
      ['api', 'allowed', []],
      ['api', 'limited', ['default']],
    ])
    expect(JSON.stringify(events.map(({ request, ...rest }) => rest))).not.toContain('203.0.113.99')
    expect(events[0]?.keyHash).toMatch(/^[\w-]{16}$/)
    expect(events[0]?.keyHash).toBe(events[1]?.keyHash)
    // Computed on first read, and still part of the payload as a logger serializes it.
    expect(JSON.parse(JSON.stringify(events[0]))).toMatchObject({ policy: 'api', keyHash: events[0]?.keyHash })
  })
})

describe('store failures', () => {
  const events: StoreErrorEvent[] = []
  const onError = (m: unknown) => events.push(m as StoreErrorEvent)
  afterEach(() => {
    diagnostics.unsubscribe('breakwater:store:error', onError)
    events.length = 0
  })

  it('fail-open lets requests through within the timeout when the store hangs', async () => {
    diagnostics.subscribe('breakwater:store:error', onError)
    const store = new ScriptedStore()
    store.mode = 'hang'
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', store, storeTimeoutMs: 50 })
    const started = performance.now()
    const decision = await limiter.check(view())
    expect(performance.now() - started).toBeLessThan(500)
    expect(decision.action).toBe('continue')
    expect(events[0]).toMatchObject({ operation: 'consume', kind: 'timeout', action: 'fail-open' })
  })

  it('fail-closed answers 503 with BW_STORE_UNAVAILABLE', async () => {
    const store = new ScriptedStore()
    store.mode = 'fail'
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', store, onStoreError: 'fail-closed' })
    const decision = await limiter.check(view())
    expect(decision).toMatchObject({ action: 'reject', status: 503, body: { code: 'BW_STORE_UNAVAILABLE' } })
  })

  it('a fallback store keeps limiting while the primary is down', async () => {
    const store = new ScriptedStore()
    store.mode = 'fail'
    const limiter = createRateLimiter({
      limit: 1,
      windowMs: '1m',
      store,
      onStoreError: { fallback: new MemoryRateLimitStore() },
    })
    expect((await limiter.check(view())).action).toBe('continue')
    expect((await limiter.check(view())).action).toBe('reject')
  })

  it('after a failure, skips the store (no waiting) until one probe finds it back', async () => {
    const store = new ScriptedStore()
    store.mode = 'hang'
    const limiter = createRateLimiter({ limit: 100, windowMs: '1m', store, storeTimeoutMs: 30 })
    await limiter.check(view())
    const callsAfterFirst = store.calls
    const started = performance.now()
    for (let i = 0; i < 20; i++) expect((await limiter.check(view())).action).toBe('continue')
    expect(performance.now() - started).toBeLessThan(100)
    expect(store.calls).toBe(callsAfterFirst)
    store.mode = 'ok'
    await new Promise((r) => setTimeout(r, 1_050))
    await limiter.check(view())
    expect(store.calls).toBe(callsAfterFirst + 1)
    expect(header(await limiter.check(view()), 'RateLimit')).toMatch(/r=98/)
  })

  it('answers from the denial cache only for requests costing at least as much as the denied one', async () => {
    const store = new ScriptedStore()
    const limiter = createRateLimiter({
      limit: 5,
      windowMs: '1h',
      store,
      cost: (req) => Number(req.header('x-cost') ?? '1'),
    })
    const costing = (n: number) => view('192.0.2.1', { 'x-cost': String(n) })
    expect((await limiter.check(costing(3))).action).toBe('continue')
    expect((await limiter.check(costing(3))).action).toBe('reject')
    const calls = store.calls
    expect((await limiter.check(costing(4))).action).toBe('reject')
    expect(store.calls).toBe(calls)
    expect((await limiter.check(costing(2))).action).toBe('continue')
    expect(store.calls).toBe(calls + 1)
  })

  it('keeps skipping a store that answers, but slower than the timeout', async () => {
    const store = new ScriptedStore()
    store.mode = 'slow'
    const limiter = createRateLimiter({ limit: 100, windowMs: '1m', store, storeTimeoutMs: 100 })
    await limiter.check(view())
    expect(store.calls).toBe(1)
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 120)) // the late reply (at 300 ms) arrives meanwhile
      const started = performance.now()
      expect((await limiter.check(view())).action).toBe('continue')
      expect(performance.now() - started).toBeLessThan(60) // answered at once, not after the 100 ms timeout
    }
    expect(store.calls).toBe(1)
  })

  it('remembers denied keys locally so a blocked client does not cost a store call', async () => {
    const store = new ScriptedStore()
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', store })
    await limiter.check(view())
    expect((await limiter.check(view())).action).toBe('reject')
    const calls = store.calls
    const again = await limiter.check(view())
    expect(again.action).toBe('reject')
    expect(store.calls).toBe(calls)
    await limiter.reset('192.0.2.1')
    expect((await limiter.check(view())).action).toBe('continue')
  })
})
