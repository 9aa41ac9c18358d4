// @breakwater/undici against a real loopback upstream over real sockets: the breaker opens on 5xx through fetch
// and request on a composed Agent, and through Node's own global fetch; cancelled attempts close their sockets;
// the caller's abort and request context reach the upstream call.

import {
  dependency,
  isAttemptTimeoutError,
  isCircuitOpenError,
  isDeadlineExceededError,
  isRequestAbortedError,
  RequestContext,
} from '@breakwater/core'
import { breakwater } from '@breakwater/undici'
import { Agent, getGlobalDispatcher, request, setGlobalDispatcher, fetch as undiciFetch } from 'undici'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { until } from '../adapter-conformance/support.js'
import { type ScriptedUpstream, startScriptedUpstream } from './scripted-upstream.js'

let upstream: ScriptedUpstream
const agents: Agent[] = []
beforeEach(async () => {
  upstream = await startScriptedUpstream()
})
afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.close()))
  await upstream.close()
})

function agent(): Agent {
  const created = new Agent()
  agents.push(created)
  return created
}

const settle = <T>(p: Promise<T>): Promise<T | unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

describe('breakwater() on an undici Agent', () => {
  it('opens the breaker on 5xx answers through undici fetch, then fails fast without calling the upstream', async () => {
    upstream.fallback = { status: 503, body: 'down' }
    const inventory = dependency('inventory-fetch', { breaker: { consecutiveFailures: 3, openMs: 60_000 } })
    const dispatcher = agent().compose(breakwater({ dependencies: { [upstream.origin]: inventory } }))
    for (let i = 0; i < 3; i++) {
      const res = await undiciFetch(`${upstream.origin}/stock`, { dispatcher })
      expect(res.status).toBe(503) // the caller still sees the upstream's answer
      expect(await res.text()).toBe('down')
    }
    expect(inventory.breaker?.state).toBe('open')
    const error = (await settle(undiciFetch(`${upstream.origin}/stock`, { dispatcher }))) as Error
    expect(error).toBeInstanceOf(TypeError) // fetch's "fetch failed", caused by the open circuit
    expect(isCircuitOpenError(error.cause)).toBe(true)
    expect(upstream.received).toHaveLength(3)
  })

  it('opens the breaker on 5xx answers through undici request', async () => {
    upstream.fallback = { status: 500 }
    const inventory = dependency('inventory-request', { breaker: { consecutiveFailures: 2, openMs: 60_000 } })
    const dispatcher = agent().compose(breakwater({ dependencies: { [upstream.origin]: inventory } }))
    for (let i = 0; i < 2; i++) {
      const res = await request(`${upstream.origin}/stock`, { dispatcher })
      expect(res.statusCode).toBe(500)
      expect(await res.body.text()).toBe('status 500')
    }
    const error = await settle(request(`${upstream.origin}/stock`, { dispatcher }))
    expect(isCircuitOpenError(error)).toBe(true)
    expect(upstream.received).toHaveLength(2)
  })

  it('counts 429 as a failure and 4xx otherwise as a success', async () => {
    upstream.script = [{ status: 404 }, { status: 429 }, { status: 429 }]
    const inventory = dependency('inventory-4xx', { breaker: { consecutiveFailures: 2, openMs: 60_000 } })
    const dispatcher = agent().compose(breakwater({ dependencies: { [upstream.origin]: inventory } }))
    expect((await request(`${upstream.origin}/a`, { dispatcher })).statusCode).toBe(404)
    expect(inventory.breaker?.snapshot().consecutiveFailures).toBe(0)
    expect((await request(`${upstream.origin}/b`, { dispatcher })).statusCode).toBe(429)
    expect((await request(`${upstream.origin}/c`, { dispatcher })).statusCode).toBe(429)
    expect(inventory.breaker?.state).toBe('open')
  })

  it('passes requests to other origins through untouched', async () => {
    upstream.fallback = { status: 503 }
    const other = dependency('other-origin', { breaker: { consecutiveFailures: 1, openMs: 60_000 } })
    const dispatcher = agent().compose(breakwater({ dependencies: { 'http://127.0.0.1:1': other } }))
    for (let i = 0; i < 3; i++) expect((await undiciFetch(`${upstream.origin}/x`, { dispatcher })).status).toBe(503)
    expect(other.breaker?.state).toBe('closed')
    expect(upstream.received).toHaveLength(3)
  })

  it('resolves dependencies with a function of the origin, and builds one from options', async () => {
    upstream.fallback = { status: 502 }
    const made = dependency('by-function', { breaker: { consecutiveFailures: 1, openMs: 60_000 } })
    const seen: string[] = []
    const byFunction = agent().compose(
      breakwater({
        dependencies: (origin) => {
          seen.push(origin)
          return origin === upstream.origin ? made : undefined
        },
      }),
    )
    await (await undiciFetch(`${upstream.origin}/f`, { dispatcher: byFunction })).text()
    expect(seen).toEqual([upstream.origin])
    expect(made.breaker?.state).toBe('open')

    const fromOptions = agent().compose(
      breakwater({
        dependencies: { [`${upstream.origin}/`]: { breaker: { consecutiveFailures: 1, openMs: 60_000 } } },
      }),
    )
    await (await undiciFetch(`${upstream.origin}/g`, { dispatcher: fromOptions })).text()
    expect(
      isCircuitOpenError((await settle(request(`${upstream.origin}/g`, { dispatcher: fromOptions }))) as Error),
    ).toBe(true)
  })

  it('rejects unknown options and non-origin keys, naming them', () => {
    expect(() => breakwater({ dependencies: {}, retries: 3 } as never)).toThrow(/Unknown option "retries"/)
    expect(() => breakwater({ dependencies: {}, contxt: () => undefined } as never)).toThrow(/did you mean "context"/)
    expect(() => breakwater({ dependencies: { 'http://h:1/path': {} } })).toThrow(
      /dependencies\["http:\/\/h:1\/path"\]/,
    )
    expect(() => breakwater({ dependencies: { 'http://h:1': { retry: 1 } as never } })).toThrow(/"retry"/)
    expect(() => breakwater({} as never)).toThrow(/"dependencies"/)
    expect(() => breakwater({ dependencies: {}, maxDumpBytes: -1 })).toThrow(/"maxDumpBytes"/)
  })

  it('refuses, with a message saying why, a handler of the older API (undici 6’s compose) on a guarded origin', () => {
    const intercept = breakwater({ dependencies: { 'http://127.0.0.1:1': {} } })
    const dispatch = (intercept as unknown as (d: () => boolean) => (o: object, h: object) => boolean)(() => true)
    const legacy = { onConnect() {}, onHeaders: () => true, onData: () => true, onComplete() {}, onError() {} }
    expect(() => dispatch({ origin: 'http://127.0.0.1:1', path: '/', method: 'GET' }, legacy)).toThrow(/undici 7/)
    // Unguarded origins pass through whatever the handler.
    expect(dispatch({ origin: 'http://127.0.0.1:2', path: '/', method: 'GET' }, legacy)).toBe(true)
  })
})

describe('cancellation', () => {
  it('an attempt timeout closes the attempt’s socket, seen at the upstream', async () => {
    upstream.fallback = { status: 200, delayMs: 5_000 }
    const slow = dependency('slow-attempt', { attemptTimeoutMs: 100 })
    const dispatcher = agent().compose(breakwater({ dependencies: { [upstream.origin]: slow } }))
    const started = performance.now()
    const error = (await settle(undiciFetch(`${upstream.origin}/hang`, { dispatcher }))) as Error
    expect(isAttemptTimeoutError(error.cause)).toBe(true)
    expect(performance.now() - started).toBeLessThan(2_000)
    await until(() => upstream.closedEarly.length === 1, 3_000)
    expect(upstream.closedEarly).toEqual(['/hang'])
  })

  it('the caller’s abort reaches the upstream call, and the breaker does not count it', async () => {
    upstream.fallback = { status: 200, delayMs: 5_000 }
    const inventory = dependency('caller-abort', { breaker: { consecutiveFailures: 1, openMs: 60_000 } })
    const dispatcher = agent().compose(breakwater({ dependencies: { [upstream.origin]: inventory } }))
    const controller = new AbortController()
    const pending = settle(undiciFetch(`${upstream.origin}/hang`, { dispatcher, signal: controller.signal }))
    await until(() => upstream.received.length === 1, 3_000)
    controller.abort()
    expect(((await pending) as Error).name).toBe('AbortError')
    await until(() => upstream.closedEarly.length === 1, 3_000)
    expect(inventory.breaker?.state).toBe('closed')

    const viaRequest = settle(request(`${upstream.origin}/hang2`, { dispatcher, signal: AbortSignal.timeout(100) }))
    expect(((await viaRequest) as Error).name).toMatch(/Abort|Timeout/)
    await until(() => upstream.closedEarly.length === 2, 3_000)
    expect(inventory.breaker?.state).toBe('closed')
  })

  it('uses the caller’s request context: its remaining budget is forwarded and its deadline bounds the call', async () => {
    upstream.fallback = { status: 200, delayMs: 5_000 }
    const inventory = dependency('context-deadline', { attemptTimeoutMs: 10_000 })
    const context = new RequestContext({ timeoutMs: 300 })
    const dispatcher = agent().compose(
      breakwater({ dependencies: { [upstream.origin]: inventory }, context: () => context }),
    )
    const started = performance.now()
    const error = (await settle(undiciFetch(`${upstream.origin}/budget`, { dispatcher }))) as Error
    context.dispose()
    // The request's own deadline timer and the call's deadline fire at the same moment: either reason is right.
    expect(isDeadlineExceededError(error.cause) || isRequestAbortedError(error.cause)).toBe(true)
    expect(performance.now() - started).toBeLessThan(2_000)
    const forwarded = Number(upstream.received[0]?.headers['request-timeout-ms'])
    expect(forwarded).toBeGreaterThan(0)
    expect(forwarded).toBeLessThanOrEqual(300)
    await until(() => upstream.closedEarly.length === 1, 3_000)
  })
})

describe('Node’s built-in fetch through setGlobalDispatcher', () => {
  it('reaches the interceptor from globalThis.fetch (Node 20 bundles undici 6)', async () => {
    upstream.fallback = { status: 503 }
    const inventory = dependency('global-fetch', { breaker: { consecutiveFailures: 2, openMs: 60_000 } })
    const previous = getGlobalDispatcher()
    setGlobalDispatcher(agent().compose(breakwater({ dependencies: { [upstream.origin]: inventory } })))
    try {
      for (let i = 0; i < 2; i++) {
        const res = await globalThis.fetch(`${upstream.origin}/global`)
        expect(res.status).toBe(503)
        await res.text()
      }
      const error = (await settle(globalThis.fetch(`${upstream.origin}/global`))) as Error
      expect(isCircuitOpenError(error.cause)).toBe(true)
      expect(upstream.received).toHaveLength(2)
    } finally {
      setGlobalDispatcher(previous)
    }
  })
})
