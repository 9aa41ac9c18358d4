// A remote store failing when an executed request completes: the result is kept and written in the background,
// and duplicates reaching this process are answered from it. The store here is an in-process store behind a
// switch that makes every call fail, as a Redis that went away would (real Redis stalls: test/redis-failure).

import diagnostics from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createIdempotency,
  type IdempotencySettledEvent,
  type IdempotencyStore,
  type IdempotencyTicket,
  MemoryIdempotencyStore,
  type RequestView,
} from '../src/index.js'
import { until } from './helpers.js'

/** A remote-looking store over memory: while `down`, every call rejects. */
class SwitchedStore implements IdempotencyStore {
  readonly local = false
  readonly inner = new MemoryIdempotencyStore()
  down = false
  calls = 0
  /** The record key of the last claim. */
  key = ''
  #run<T>(call: () => T): Promise<T> {
    this.calls++
    return this.down ? Promise.reject(new Error('connection lost')) : Promise.resolve(call())
  }
  claim(key: string, fingerprint: string, token: string, lockTtlMs: number) {
    this.key = key
    return this.#run(() => this.inner.claim(key, fingerprint, token, lockTtlMs))
  }
  complete(...args: Parameters<IdempotencyStore['complete']>) {
    return this.#run(() => this.inner.complete(...args))
  }
  extend(key: string, token: string, lockTtlMs: number) {
    return this.#run(() => this.inner.extend(key, token, lockTtlMs))
  }
  release(key: string, token: string) {
    return this.#run(() => this.inner.release(key, token))
  }
  get(key: string) {
    return this.#run(() => this.inner.get(key))
  }
}

const order = (key: string): RequestView => ({
  method: 'POST',
  path: '/orders',
  ip: '192.0.2.1',
  header: (name) => (name.toLowerCase() === 'idempotency-key' ? key : undefined),
  signal: new AbortController().signal,
})
const json = (name: string) => (name === 'Content-Type' ? 'application/json' : undefined)

const settledEvents: IdempotencySettledEvent[] = []
const onSettled = (message: unknown): void => {
  settledEvents.push(message as IdempotencySettledEvent)
}
diagnostics.subscribe('breakwater:idempotency:settled', onSettled)
afterEach(() => {
  settledEvents.length = 0
})

async function executed(policy: ReturnType<typeof createIdempotency>, key: string, body: unknown) {
  const decision = await policy.check(order(key), body)
  if (decision.action !== 'execute') throw new Error(`expected execute, got ${decision.action}`)
  return decision.ticket as IdempotencyTicket
}

describe('a completion meeting a failing remote store', () => {
  it('lets the response go, answers duplicates here from memory, and writes the record once the store is back', async () => {
    const store = new SwitchedStore()
    const policy = createIdempotency({ store, scope: () => 'u', storeTimeoutMs: 100, lockTtlMs: 2000 })
    const ticket = await executed(policy, 'k1', { amount: 1 })
    store.down = true
    await ticket.finish(201, json, '{"id":"first"}') // resolves: the client gets its 201
    expect(store.inner.get(store.key)?.state).toBe('in_progress')

    // The store is down, yet a duplicate here is replayed — not executed, not 503.
    const duplicate = await policy.check(order('k1'), { amount: 1 })
    expect(duplicate).toMatchObject({ action: 'replay', status: 201, body: '{"id":"first"}' })
    expect(await policy.check(order('k1'), { amount: 2 })).toMatchObject({ action: 'reject', status: 422 })
    expect(await policy.lookup(order('k1'), 'k1')).toMatchObject({ state: 'completed' })
    expect(settledEvents).toEqual([])

    store.down = false
    await until(() => settledEvents.length > 0, 3000)
    expect(settledEvents).toMatchObject([{ outcome: 'stored', status: 201, request: undefined }])
    const record = store.inner.get(store.key)
    expect(record?.state === 'completed' && record.response.body.toString()).toBe('{"id":"first"}')
  })

  it('keeps retrying with backoff while the store stays down, without a call storm', async () => {
    const store = new SwitchedStore()
    const policy = createIdempotency({ store, scope: () => 'u', storeTimeoutMs: 100, lockTtlMs: 4000 })
    const ticket = await executed(policy, 'k2', {})
    store.down = true
    await ticket.finish(201, json, '{}')
    const before = store.calls
    await new Promise((resolve) => setTimeout(resolve, 1500))
    // 50, 100, 200, 400, 800 ms…: a handful of rounds in 1.5 s, each a complete (and an extend once the lock ages).
    const rounds = store.calls - before
    expect(rounds).toBeGreaterThanOrEqual(3)
    expect(rounds).toBeLessThanOrEqual(12)
    store.down = false
    await until(() => settledEvents.some((e) => e.outcome === 'stored'), 3000)
  })

  it('reports a completion refused by the store (another execution owns the key) as lost, and stops', async () => {
    const store = new SwitchedStore()
    const policy = createIdempotency({ store, scope: () => 'u', storeTimeoutMs: 100 })
    const ticket = await executed(policy, 'k3', {})
    store.down = true
    await ticket.finish(201, json, '{}')
    store.inner.shutdown() // the record is gone: the owner token no longer holds the key
    store.down = false
    await until(() => settledEvents.length > 0, 3000)
    expect(settledEvents).toMatchObject([{ outcome: 'lost' }])
    const calls = store.calls
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(store.calls).toBe(calls)
  })
})
