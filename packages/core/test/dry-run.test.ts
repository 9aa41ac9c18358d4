// Dry run: rate limiting and load shedding decide and report as when enforcing, and let the request through.

import diagnostics from 'node:diagnostics_channel'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createLoadShedder,
  createRateLimiter,
  type Decision,
  isPromiseLike,
  type LoadShedder,
  type LoadSheddingDecisionEvent,
  MemoryRateLimitStore,
  type RateLimitDecisionEvent,
  type RateLimiter,
  type RequestView,
} from '../src/index.js'
import { view } from './helpers.js'

function check(limiter: RateLimiter, request: RequestView): Decision {
  const decision = limiter.check(request)
  if (isPromiseLike(decision)) throw new Error('expected a synchronous decision')
  return decision
}

function record<T>(channel: string): { events: T[]; stop: () => void } {
  const events: T[] = []
  const listener = (message: unknown) => events.push(message as T)
  diagnostics.subscribe(channel, listener)
  return { events, stop: () => diagnostics.unsubscribe(channel, listener) }
}

const listeners: Array<() => void> = []
afterEach(() => {
  for (const stop of listeners.splice(0)) stop()
})
const decisions = () => {
  const r = record<RateLimitDecisionEvent>('breakwater:rate-limit:decision')
  listeners.push(r.stop)
  return r.events
}

describe('rate limiting in dry run', () => {
  it('charges and reports `limited` with dryRun: true, but lets the request through without headers', () => {
    const events = decisions()
    const store = new MemoryRateLimitStore()
    const limiter = createRateLimiter({ id: 'dry', limit: 1, windowMs: '1m', store, dryRun: true })
    const outcomes = [1, 2, 3].map(() => check(limiter, view('192.0.2.10')))
    expect(outcomes).toEqual([1, 2, 3].map(() => ({ action: 'continue', headers: undefined })))
    const mine = events.filter((e) => e.policy === 'dry')
    expect(mine.map((e) => [e.outcome, e.dryRun, e.violated])).toEqual([
      ['allowed', true, []],
      ['limited', true, ['default']],
      ['limited', true, ['default']],
    ])
    // The store holds exactly what enforcement would have charged: one unit, the denials charged nothing.
    expect(store.peek('dry:192.0.2.10', [rule()], 1).allowed).toBe(false)
  })

  it('sends the headers it would send, without Retry-After, when dryRunHeaders is set', () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m', dryRun: true, dryRunHeaders: true })
    check(limiter, view('192.0.2.11'))
    const over = check(limiter, view('192.0.2.11'))
    expect(over.action).toBe('continue')
    const names = (over.headers ?? []).map(([name]) => name)
    expect(names).toContain('RateLimit')
    expect(names).not.toContain('Retry-After')
    expect(over.headers?.find(([n]) => n === 'RateLimit')?.[1]).toMatch(/^"default";r=0;t=\d+$/)
  })

  it('a dryRun function picks the requests decided in dry run; the others are enforced', () => {
    const events = decisions()
    const limiter = createRateLimiter({
      id: 'dry-fn',
      limit: 1,
      windowMs: '1m',
      dryRun: (request) => request.header('x-canary') === '1',
    })
    check(limiter, view('192.0.2.12'))
    expect(check(limiter, view('192.0.2.12', { 'x-canary': '1' })).action).toBe('continue')
    expect(check(limiter, view('192.0.2.12')).action).toBe('reject')
    expect(events.filter((e) => e.policy === 'dry-fn').map((e) => [e.outcome, e.dryRun])).toEqual([
      ['allowed', false],
      ['limited', true],
      ['limited', false],
    ])
  })

  it('enforcePercent enforces a stable share of keys, and raising it keeps the keys already enforced', () => {
    const keys = Array.from({ length: 2000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.7`)
    const enforced = (percent: number): Set<string> => {
      const limiter = createRateLimiter({ limit: 1, windowMs: '1m', enforcePercent: percent })
      const set = new Set<string>()
      for (const ip of keys) {
        check(limiter, view(ip))
        if (check(limiter, view(ip)).action === 'reject') set.add(ip)
      }
      return set
    }
    const twenty = enforced(20)
    const sixty = enforced(60)
    expect(twenty.size / keys.length).toBeGreaterThan(0.16)
    expect(twenty.size / keys.length).toBeLessThan(0.24)
    expect(sixty.size / keys.length).toBeGreaterThan(0.55)
    expect(sixty.size / keys.length).toBeLessThan(0.65)
    for (const ip of twenty) expect(sixty.has(ip)).toBe(true)
    expect(enforced(20)).toEqual(twenty)
    expect(enforced(0).size).toBe(0)
    expect(enforced(100).size).toBe(keys.length)
  })

  it('rejects invalid dry-run options, naming them', () => {
    expect(() => createRateLimiter({ limit: 1, windowMs: 1000, dryRun: 'yes' as never })).toThrow(/"dryRun"/)
    expect(() => createRateLimiter({ limit: 1, windowMs: 1000, enforcePercent: 101 })).toThrow(/"enforcePercent"/)
    expect(() => createRateLimiter({ limit: 1, windowMs: 1000, dryRunHeaders: 1 as never })).toThrow(/"dryRunHeaders"/)
  })
})

describe('load shedding in dry run', () => {
  const shedders: LoadShedder[] = []
  afterEach(() => {
    for (const shedder of shedders.splice(0)) shedder.close()
  })
  const response = (): ServerResponse => new ServerResponse(new IncomingMessage(new Socket()))

  it('reports `shed` with dryRun: true and admits the request, holding a permit', () => {
    const r = record<LoadSheddingDecisionEvent>('breakwater:load-shedding:decision')
    listeners.push(r.stop)
    const shedder = createLoadShedder({ id: 'dry-shed', limit: 1, dryRun: true })
    shedders.push(shedder)
    expect(shedder.admit(response(), view())).toMatchObject({ action: 'continue' })
    expect(shedder.admit(response(), view())).toMatchObject({ action: 'continue' })
    expect(shedder.inflight).toBe(2)
    const mine = r.events.filter((e) => e.policy === 'dry-shed')
    expect(mine.map((e) => [e.outcome, e.reason, e.dryRun])).toEqual([
      ['admitted', undefined, false],
      ['shed', 'limit', true],
      ['admitted', undefined, true],
    ])
    // Not enforced, so not reported as overloaded to readiness probes.
    expect(shedder.overloadState().overloaded).toBe(false)
  })

  it('reports `queued` for a request it would have queued, and a dryRun function enforces the others', () => {
    const r = record<LoadSheddingDecisionEvent>('breakwater:load-shedding:decision')
    listeners.push(r.stop)
    const shedder = createLoadShedder({
      id: 'dry-queue',
      limit: 1,
      queue: true,
      dryRun: (request) => request.header('x-canary') === '1',
    })
    shedders.push(shedder)
    shedder.admit(response(), view())
    expect(shedder.admit(response(), view('192.0.2.1', { 'x-canary': '1' }))).toMatchObject({ action: 'continue' })
    expect(isPromiseLike(shedder.admit(response(), view()))).toBe(true) // enforced: waits in the queue
    const mine = r.events.filter((e) => e.policy === 'dry-queue')
    expect(mine.map((e) => [e.outcome, e.dryRun])).toEqual([
      ['admitted', false],
      ['queued', true],
      ['admitted', true],
      ['queued', false],
    ])
    expect(() => createLoadShedder({ dryRun: 1 as never })).toThrow(/"dryRun"/)
  })
})

function rule() {
  return { name: 'default', algorithm: 'gcra' as const, limit: 1, windowMs: 60_000, burst: 1 }
}
