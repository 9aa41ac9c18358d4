import diagnostics from 'node:diagnostics_channel'
import { describe, expect, it } from 'vitest'
import {
  canonicalJson,
  createIdempotency,
  ErrorCode,
  type IdempotencyDecision,
  type IdempotencyDecisionEvent,
  type IdempotencyOptions,
  type IdempotencySettledEvent,
  type IdempotencyStore,
  type IdempotencyTicket,
  isInvalidOptionError,
  isPromiseLike,
  MemoryIdempotencyStore,
  parseIdempotencyKey,
  type RequestView,
} from '../src/index.js'
import { manualClock } from './helpers.js'

function post(headers: Record<string, string> = {}, path = '/orders', method = 'POST'): RequestView {
  return {
    method,
    path,
    ip: '192.0.2.1',
    header: (name) => headers[name.toLowerCase()],
    signal: new AbortController().signal,
  }
}

const keyed = (key: string, extra: Record<string, string> = {}) => post({ 'idempotency-key': key, ...extra })
const policy = (options: IdempotencyOptions = {}) => createIdempotency({ scope: () => 'user-1', ...options })

function sync(decision: ReturnType<ReturnType<typeof createIdempotency>['check']>): IdempotencyDecision {
  if (isPromiseLike(decision)) throw new Error('expected a synchronous decision')
  return decision
}

function ticketOf(decision: IdempotencyDecision): IdempotencyTicket {
  if (decision.action !== 'execute') throw new Error(`expected execute, got ${decision.action}`)
  return decision.ticket
}

const headersOf = (map: Record<string, string>) => (name: string) => map[name.toLowerCase()]

describe('parseIdempotencyKey', () => {
  it('accepts an sf-string and a bare token, unquoting and unescaping', () => {
    expect(parseIdempotencyKey('"8e03978e-40d5"')).toBe('8e03978e-40d5')
    expect(parseIdempotencyKey('order-42')).toBe('order-42')
    expect(parseIdempotencyKey(' "a \\"b\\" \\\\c" ')).toBe('a "b" \\c')
  })
  it('rejects empty, unterminated, bad escapes, non-ASCII, over-long and repeated values', () => {
    for (const bad of ['', '""', '"abc', '"a\\nb"', '"é"', 'a b', `"${'x'.repeat(256)}"`, 'x'.repeat(256), 'a, b']) {
      expect(parseIdempotencyKey(bad)).toBeUndefined()
    }
    expect(parseIdempotencyKey('"a", "b"')).toBeUndefined()
    expect(parseIdempotencyKey(`"${'x'.repeat(255)}"`)).toHaveLength(255)
  })
})

describe('createIdempotency', () => {
  it('passes through methods it does not cover and covered requests without a key', () => {
    const p = policy()
    expect(sync(p.check(post({}, '/orders', 'GET'), undefined)).action).toBe('continue')
    expect(sync(p.check(post({ 'idempotency-key': 'k' }, '/orders', 'PUT'), undefined)).action).toBe('continue')
    expect(sync(p.check(post(), { a: 1 })).action).toBe('continue')
    expect(p.covers('patch')).toBe(true)
  })

  it('answers 400 problems for a missing (when required) and a malformed key', () => {
    const missing = sync(policy({ required: true }).check(post(), {}))
    expect(missing).toMatchObject({ action: 'reject', status: 400, body: { code: ErrorCode.IdempotencyKeyMissing } })
    const malformed = sync(policy().check(keyed('"a", "b"'), {}))
    expect(malformed).toMatchObject({ action: 'reject', status: 400, body: { code: ErrorCode.IdempotencyKeyInvalid } })
    if (malformed.action === 'reject') {
      expect(malformed.headers).toContainEqual(['Content-Type', 'application/problem+json'])
    }
  })

  it('executes once, then replays the stored status, allow-listed headers and body with Idempotent-Replayed', () => {
    const p = policy()
    const ticket = ticketOf(sync(p.check(keyed('k1'), { item: 'book' })))
    const stored = ticket.finish(
      201,
      headersOf({ 'content-type': 'application/json', location: '/orders/1', 'set-cookie': 's=1', date: 'x' }),
      '{"id":1}',
    )
    expect(stored).toBeUndefined() // memory store: synchronous
    expect(ticket.settled).toBe(true)
    const replay = sync(p.check(keyed('"k1"'), { item: 'book' }))
    expect(replay.action).toBe('replay')
    if (replay.action !== 'replay') return
    expect(replay.status).toBe(201)
    expect(replay.body.toString()).toBe('{"id":1}')
    expect(replay.headers).toEqual([
      ['Content-Type', 'application/json'],
      ['Location', '/orders/1'],
      ['Idempotent-Replayed', 'true'],
    ])
  })

  it('replays UTF-8 bodies as strings and other bytes as the exact Buffer', () => {
    const p = policy()
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x41])
    ticketOf(sync(p.check(keyed('bin'), {}))).finish(200, headersOf({}), bytes)
    const binary = sync(p.check(keyed('bin'), {}))
    expect(binary.action === 'replay' && Buffer.isBuffer(binary.body) && binary.body.equals(bytes)).toBe(true)
    ticketOf(sync(p.check(keyed('utf8'), {}))).finish(200, headersOf({}), Buffer.from('héllo ✓'))
    const text = sync(p.check(keyed('utf8'), {}))
    expect(text.action === 'replay' && text.body).toBe('héllo ✓')
  })

  it('answers 409 with Retry-After while the first is in progress, and 422 for another payload', () => {
    const p = policy()
    ticketOf(sync(p.check(keyed('k2'), { amount: 5 })))
    const conflict = sync(p.check(keyed('k2'), { amount: 5 }))
    expect(conflict).toMatchObject({ status: 409, body: { code: ErrorCode.IdempotencyInProgress } })
    if (conflict.action === 'reject') expect(conflict.headers).toContainEqual(['Retry-After', '1'])
    const mismatch = sync(p.check(keyed('k2'), { amount: 6 }))
    expect(mismatch).toMatchObject({ status: 422, body: { code: ErrorCode.IdempotencyMismatch } })
  })

  it('scopes keys by caller, method and route', () => {
    let user = 'alice'
    const p = createIdempotency({ scope: () => user })
    ticketOf(sync(p.check(keyed('shared'), {})))
    user = 'bob'
    expect(sync(p.check(keyed('shared'), {})).action).toBe('execute')
    expect(sync(p.check(post({ 'idempotency-key': 'shared' }, '/payments'), {})).action).toBe('execute')
    expect(sync(p.check(post({ 'idempotency-key': 'shared' }, '/orders', 'PATCH'), {})).action).toBe('execute')
  })

  it('releases the key for 5xx and 408/409/429, errors, oversized and streamed bodies', () => {
    const p = policy({ maxBodyBytes: 10 })
    const cases: Array<(t: IdempotencyTicket) => void> = [
      (t) => t.finish(500, headersOf({}), 'boom'),
      (t) => t.finish(429, headersOf({}), 'slow down'),
      (t) => t.finish(408, headersOf({}), ''),
      (t) => t.abandon('error'),
      (t) => t.finish(200, headersOf({}), 'x'.repeat(11)),
      (t) => {
        expect(t.write('12345')).toBe(true)
        expect(t.write('123456')).toBe(false)
      },
      (t) => t.finish(200, headersOf({}), { pipe() {} }),
    ]
    cases.forEach((finish, i) => {
      const ticket = ticketOf(sync(p.check(keyed(`rel-${i}`), {})))
      finish(ticket)
      expect(ticket.settled).toBe(true)
      // Released: the retry executes instead of getting 409.
      expect(sync(p.check(keyed(`rel-${i}`), {})).action).toBe('execute')
    })
  })

  it('stores 4xx answers such as 400 and 404 by default, and what `storeStatus` says', () => {
    const p = policy()
    ticketOf(sync(p.check(keyed('s400'), {}))).finish(400, headersOf({}), 'bad')
    expect(sync(p.check(keyed('s400'), {}))).toMatchObject({ action: 'replay', status: 400 })
    const all = policy({ storeStatus: () => true })
    ticketOf(sync(all.check(keyed('s500'), {}))).finish(503, headersOf({}), 'down')
    expect(sync(all.check(keyed('s500'), {}))).toMatchObject({ action: 'replay', status: 503 })
  })

  it('fingerprints canonical JSON by default, and honours include / exclude / false', () => {
    expect(canonicalJson({ b: [1, { d: 1, c: 2 }], a: null })).toBe('{"a":null,"b":[1,{"c":2,"d":1}]}')
    const p = policy()
    ticketOf(sync(p.check(keyed('fp'), { a: 1, b: 2 }))).finish(201, headersOf({}), '{}')
    expect(sync(p.check(keyed('fp'), { b: 2, a: 1 })).action).toBe('replay')
    const ex = policy({ fingerprint: { exclude: ['sentAt'] } })
    ticketOf(sync(ex.check(keyed('fp'), { a: 1, sentAt: 1 }))).finish(201, headersOf({}), '{}')
    expect(sync(ex.check(keyed('fp'), { a: 1, sentAt: 2 })).action).toBe('replay')
    expect(sync(ex.check(keyed('fp'), { a: 2, sentAt: 2 })).action).toBe('reject')
    const inc = policy({ fingerprint: { include: ['amount'] } })
    ticketOf(sync(inc.check(keyed('fp'), { amount: 1, note: 'x' }))).finish(201, headersOf({}), '{}')
    expect(sync(inc.check(keyed('fp'), { amount: 1, note: 'y' })).action).toBe('replay')
    const off = policy({ fingerprint: false })
    ticketOf(sync(off.check(keyed('fp'), 'one'))).finish(201, headersOf({}), '{}')
    expect(sync(off.check(keyed('fp'), 'two')).action).toBe('replay')
  })

  it('a lapsed lock is renewed once, then the key executes again and the stale owner can no longer complete', () => {
    const clock = manualClock()
    const store = new MemoryIdempotencyStore({ now: clock.now })
    const p = policy({ store, lockTtlMs: 1000 })
    const stale = ticketOf(sync(p.check(keyed('crash'), {})))
    clock.advance(999)
    expect(sync(p.check(keyed('crash'), {})).action).toBe('reject')
    clock.advance(1)
    // Lapsed: the first claim past it renews the lock for one more period (a stalled owner may still complete).
    expect(sync(p.check(keyed('crash'), {})).action).toBe('reject')
    clock.advance(999)
    expect(sync(p.check(keyed('crash'), {})).action).toBe('reject')
    clock.advance(1)
    const fresh = ticketOf(sync(p.check(keyed('crash'), {})))
    stale.finish(201, headersOf({}), 'stale')
    fresh.finish(201, headersOf({}), 'fresh')
    const replay = sync(p.check(keyed('crash'), {}))
    expect(replay.action === 'replay' && replay.body.toString()).toBe('fresh')
  })

  it('looks a key up in the caller’s scope with lookup()', async () => {
    const p = policy()
    ticketOf(sync(p.check(keyed('look'), {}))).finish(201, headersOf({}), 'x')
    expect(await p.lookup(keyed('look'), 'look')).toMatchObject({ state: 'completed' })
    expect(await p.lookup(keyed('look'), 'other')).toBeUndefined()
  })

  it('a stored record expires after recordTtlMs', () => {
    const clock = manualClock()
    const p = policy({ store: new MemoryIdempotencyStore({ now: clock.now }), recordTtlMs: '1h' })
    ticketOf(sync(p.check(keyed('ttl'), {}))).finish(201, headersOf({}), 'x')
    clock.advance(3_599_999)
    expect(sync(p.check(keyed('ttl'), {})).action).toBe('replay')
    clock.advance(1)
    expect(sync(p.check(keyed('ttl'), {})).action).toBe('execute')
  })

  it('with waitMs, an in-flight duplicate waits for the first and replays its response', async () => {
    const p = policy({ waitMs: 2000 })
    const ticket = ticketOf(sync(p.check(keyed('wait'), {})))
    const waiting = p.check(keyed('wait'), {})
    expect(isPromiseLike(waiting)).toBe(true)
    setTimeout(() => ticket.finish(201, headersOf({}), 'done'), 120)
    const decision = await waiting
    expect(decision.action === 'replay' && decision.body.toString()).toBe('done')
    const short = policy({ waitMs: 100 })
    ticketOf(sync(short.check(keyed('wait2'), {})))
    expect(await short.check(keyed('wait2'), {})).toMatchObject({ status: 409 })
  })

  it('fails closed with 503 when the store fails or hangs, and open on request', async () => {
    const broken: IdempotencyStore = {
      claim: () => Promise.reject(new Error('down')),
      complete: () => Promise.resolve(false),
      release: () => Promise.resolve(false),
      get: () => Promise.resolve(undefined),
    }
    const closed = await policy({ store: broken }).check(keyed('f'), {})
    expect(closed).toMatchObject({ status: 503, body: { code: ErrorCode.StoreUnavailable } })
    const hanging: IdempotencyStore = { ...broken, claim: () => new Promise(() => {}) }
    const started = performance.now()
    const timedOut = await policy({ store: hanging, storeTimeoutMs: 50 }).check(keyed('f'), {})
    expect(timedOut).toMatchObject({ status: 503 })
    expect(performance.now() - started).toBeLessThan(1000)
    expect((await policy({ store: broken, onStoreError: 'fail-open' }).check(keyed('f'), {})).action).toBe('continue')
  })

  it('publishes decisions and settlements with a key digest, never the raw key', () => {
    const decisions: IdempotencyDecisionEvent[] = []
    const settled: IdempotencySettledEvent[] = []
    const onDecision = (m: unknown) => decisions.push(m as IdempotencyDecisionEvent)
    const onSettled = (m: unknown) => settled.push(m as IdempotencySettledEvent)
    diagnostics.subscribe('breakwater:idempotency:decision', onDecision)
    diagnostics.subscribe('breakwater:idempotency:settled', onSettled)
    try {
      const p = policy({ id: 'events' })
      ticketOf(sync(p.check(keyed('secret-key'), {}))).finish(201, headersOf({}), 'x')
      sync(p.check(keyed('secret-key'), {}))
      ticketOf(sync(p.check(keyed('other-key'), {}))).finish(500, headersOf({}), 'x')
    } finally {
      diagnostics.unsubscribe('breakwater:idempotency:decision', onDecision)
      diagnostics.unsubscribe('breakwater:idempotency:settled', onSettled)
    }
    expect(decisions.map((e) => e.outcome)).toEqual(['executed', 'replayed', 'executed'])
    expect(settled.map((e) => [e.outcome, e.reason, e.status])).toEqual([
      ['stored', undefined, 201],
      ['released', 'status', 500],
    ])
    expect(JSON.stringify([decisions, settled].flat().map(({ request: _, ...rest }) => rest))).not.toContain('secret')
    expect(decisions[0]?.keyHash).toMatch(/^[\w-]{16}$/)
  })

  it('validates options, naming the option, and refuses to replay Set-Cookie or hop-by-hop headers', () => {
    const bad: Array<[IdempotencyOptions, string]> = [
      [{ replayHeaders: ['Set-Cookie'] }, 'replayHeaders[0]'],
      [{ replayHeaders: ['Content-Type', 'Transfer-Encoding'] }, 'replayHeaders[1]'],
      [{ lockTtlMs: -1 }, 'lockTtlMs'],
      [{ methods: [] }, 'methods'],
      [{ maxBodyBytes: 0 }, 'maxBodyBytes'],
      [{ onStoreError: 'retry' as 'fail-open' }, 'onStoreError'],
      [{ header: 'bad header' }, 'header'],
    ]
    for (const [options, option] of bad) {
      try {
        policy(options)
        expect.unreachable(option)
      } catch (error) {
        expect(isInvalidOptionError(error) && error.option).toBe(option)
      }
    }
  })

  it('warns once with BW_IDEMPOTENCY_NO_SCOPE when no scope is configured', () => {
    const warnings: string[] = []
    createIdempotency({ logger: ({ code }) => warnings.push(code) })
    createIdempotency({ logger: ({ code }) => warnings.push(code) })
    // warnOnce is per process: this file may not be the first to trigger it, so at most one.
    expect(warnings.length).toBeLessThanOrEqual(1)
    if (warnings.length === 1) expect(warnings[0]).toBe('BW_IDEMPOTENCY_NO_SCOPE')
  })
})

describe('MemoryIdempotencyStore', () => {
  const response = (bytes: number) => ({ status: 201, headers: [], body: Buffer.alloc(bytes) })

  it('is bounded by maxKeys, evicting the least recently used record first', () => {
    const store = new MemoryIdempotencyStore({ maxKeys: 3 })
    for (const key of ['a', 'b', 'c']) {
      store.claim(key, 'f', 't', 60_000)
      store.complete(key, 't', response(1), 60_000)
    }
    store.get('a') // a read does not count as use; a duplicate claim does
    store.claim('a', 'f', 'other', 60_000)
    store.claim('d', 'f', 't', 60_000)
    expect(store.size).toBe(3)
    expect(store.get('a')?.state).toBe('completed')
    expect(store.get('b')).toBeUndefined()
  })

  it('is bounded by maxBytes of stored responses', () => {
    const store = new MemoryIdempotencyStore({ maxBytes: 10_000 })
    for (let i = 0; i < 10; i++) {
      store.claim(`k${i}`, 'f', 't', 60_000)
      store.complete(`k${i}`, 't', response(3000), 60_000)
    }
    expect(store.bytes).toBeLessThanOrEqual(10_000)
    expect(store.get('k9')?.state).toBe('completed')
  })

  it('completes and releases only for the owner token', () => {
    const store = new MemoryIdempotencyStore()
    expect(store.claim('k', 'f', 'owner', 60_000)).toEqual({ state: 'claimed' })
    expect(store.release('k', 'intruder')).toBe(false)
    expect(store.complete('k', 'intruder', response(1), 60_000)).toBe(false)
    expect(store.get('k')?.state).toBe('in_progress')
    expect(store.release('k', 'owner')).toBe(true)
    expect(store.get('k')).toBeUndefined()
  })
})
