// One set of behaviours every RateLimitStore must show, run against MemoryRateLimitStore, RedisRateLimitStore on one Redis and
// RedisRateLimitStore on a real 3-master Redis Cluster — and a check that memory and Redis decide the same sequence alike.

import { randomUUID } from 'node:crypto'
import {
  type Algorithm,
  MemoryRateLimitStore,
  type RateLimitResult,
  type RateLimitStore,
  type ResolvedRule,
} from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IOREDIS_MAJORS, type IoredisMajor, type StoreRedis, sleep, startStoreRedis } from '../support/redis-server.js'

const ALGORITHMS: readonly Algorithm[] = ['gcra', 'fixed-window', 'sliding-window']
const HOUR = 3_600_000
const DAY = 86_400_000

interface Harness {
  store: RateLimitStore
  /** Cluster only: the master nodes, to see where keys landed. */
  masters?: () => Redis[]
}

interface Target {
  name: string
  harness?: Harness
}

interface RedisTarget extends Target {
  major: IoredisMajor
  kind: 'single' | 'cluster'
}

const memoryTarget: Target = { name: 'MemoryRateLimitStore' }
/** RedisRateLimitStore on a single Redis and on a 3-master Redis Cluster, through each supported ioredis major. */
const redisTargets = IOREDIS_MAJORS.flatMap((major) => [
  { major, kind: 'single' as const, name: `RedisRateLimitStore on a single Redis (${major})` } as RedisTarget,
  {
    major,
    kind: 'cluster' as const,
    name: `RedisRateLimitStore on a 3-master Redis Cluster (${major})`,
  } as RedisTarget,
])
const targets: Target[] = [memoryTarget, ...redisTargets]
const singleTarget = redisTargets[0]!

let redis: StoreRedis | undefined
/** Keys of this file never meet keys of another run or suite on the shared Redis. */
const prefix = `bw-conformance-${randomUUID().slice(0, 8)}:`

beforeAll(async () => {
  memoryTarget.harness = { store: new MemoryRateLimitStore() }
  redis = await startStoreRedis()
  for (const target of redisTargets) {
    const { single, cluster } = redis.clients[target.major]
    target.harness =
      target.kind === 'single'
        ? { store: new RedisRateLimitStore({ client: single, prefix }) }
        : { store: new RedisRateLimitStore({ client: cluster, prefix }), masters: () => cluster.nodes('master') }
  }
})

afterAll(async () => {
  await redis?.close()
})

let keyCounter = 0
/** A key no other test uses. */
const freshKey = (label: string): string => `${label}-${++keyCounter}`

function rule(algorithm: Algorithm, limit: number, windowMs: number, name = 'default'): ResolvedRule {
  return Object.freeze({ name, algorithm, limit, windowMs, burst: limit })
}

async function consumeTimes(
  store: RateLimitStore,
  key: string,
  rules: readonly ResolvedRule[],
  times: number,
  cost = 1,
): Promise<RateLimitResult[]> {
  const results: RateLimitResult[] = []
  for (let i = 0; i < times; i++) results.push(await store.consume(key, rules, cost))
  return results
}

describe.each(targets)('$name', (target) => {
  const store = (): RateLimitStore => target.harness!.store

  it.each(ALGORITHMS)(
    '%s admits exactly `limit` in a burst, then denies with a sensible retryAfterMs',
    async (algorithm) => {
      const windowMs = 60_000
      const rules = [rule(algorithm, 5, windowMs)]
      const key = freshKey('burst')
      const admitted = await consumeTimes(store(), key, rules, 5)
      expect(admitted.map((r) => r.allowed)).toEqual([true, true, true, true, true])
      expect(admitted.every((r) => r.retryAfterMs === 0)).toBe(true)
      const [denied, deniedAgain] = await consumeTimes(store(), key, rules, 2)
      for (const result of [denied!, deniedAgain!]) {
        expect(result.allowed).toBe(false)
        expect(result.rules[0]).toMatchObject({ allowed: false, remaining: 0 })
        expect(result.retryAfterMs).toBe(result.rules[0]!.resetMs)
      }
      const retry = denied!.retryAfterMs
      // gcra: one emission interval (window / limit); fixed: the rest of the window; sliding: the current
      // count must decay by one unit after the roll-over, which is between window/limit and 2 windows away.
      if (algorithm === 'gcra') expect(retry).toBeGreaterThan(windowMs / 5 - 2_000)
      if (algorithm === 'gcra') expect(retry).toBeLessThanOrEqual(windowMs / 5)
      if (algorithm === 'fixed-window') expect(retry).toBeGreaterThan(windowMs - 2_000)
      if (algorithm === 'fixed-window') expect(retry).toBeLessThanOrEqual(windowMs)
      if (algorithm === 'sliding-window') expect(retry).toBeGreaterThan(windowMs / 5 - 2_000)
      if (algorithm === 'sliding-window') expect(retry).toBeLessThanOrEqual(windowMs + windowMs / 5)
      // A denial charges nothing, so the second one waits no longer than the first.
      expect(deniedAgain!.retryAfterMs).toBeLessThanOrEqual(retry)
    },
  )

  it.each(ALGORITHMS)('%s counts remaining down by one per request', async (algorithm) => {
    const results = await consumeTimes(store(), freshKey('remaining'), [rule(algorithm, 5, HOUR)], 6)
    expect(results.map((r) => r.rules[0]!.remaining)).toEqual([4, 3, 2, 1, 0, 0])
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false])
    // Allowed: resetMs is how long until the quota is whole again, within one or two windows.
    for (const r of results.slice(0, 5)) {
      expect(r.rules[0]!.resetMs).toBeGreaterThan(0)
      expect(r.rules[0]!.resetMs).toBeLessThanOrEqual(2 * HOUR)
    }
  })

  it.each(ALGORITHMS)('%s: a request denied by one rule charges none of the others', async (algorithm) => {
    const rules = [rule(algorithm, 10, HOUR, 'wide'), rule(algorithm, 2, HOUR, 'narrow')]
    const key = freshKey('multi')
    const admitted = await consumeTimes(store(), key, rules, 2)
    expect(admitted.map((r) => r.rules.map((x) => x.remaining))).toEqual([
      [9, 1],
      [8, 0],
    ])
    const denied = await consumeTimes(store(), key, rules, 3)
    for (const result of denied) {
      expect(result.allowed).toBe(false)
      expect(result.rules[0]).toMatchObject({ allowed: true, remaining: 8 })
      expect(result.rules[1]).toMatchObject({ allowed: false, remaining: 0 })
      expect(result.retryAfterMs).toBe(result.rules[1]!.resetMs)
    }
    // Cost 0 reports the state as is: the wide rule still has 8, not 5.
    const state = await store().consume(key, rules, 0)
    expect(state.rules.map((r) => r.remaining)).toEqual([8, 0])
  })

  it('a request denied by one rule of mixed algorithms charges none of the others', async () => {
    const rules = [
      rule('gcra', 10, HOUR, 'tokens'),
      rule('fixed-window', 3, HOUR, 'fixed'),
      rule('sliding-window', 10, HOUR, 'sliding'),
    ]
    const key = freshKey('mixed')
    await consumeTimes(store(), key, rules, 3)
    const denied = await store().consume(key, rules, 1)
    expect(denied.allowed).toBe(false)
    expect(denied.rules.map((r) => r.allowed)).toEqual([true, false, true])
    const state = await store().consume(key, rules, 0)
    expect(state.rules.map((r) => r.remaining)).toEqual([7, 0, 7])
  })

  it.each(ALGORITHMS)('%s charges `cost` units per request', async (algorithm) => {
    const rules = [rule(algorithm, 10, HOUR)]
    const key = freshKey('cost')
    const [a, b, c] = await consumeTimes(store(), key, rules, 3, 4)
    expect([a!.allowed, a!.rules[0]!.remaining]).toEqual([true, 6])
    expect([b!.allowed, b!.rules[0]!.remaining]).toEqual([true, 2])
    // 4 more do not fit in 2: denied, and the 2 left stay available.
    expect([c!.allowed, c!.rules[0]!.remaining]).toEqual([false, 2])
    expect(c!.retryAfterMs).toBeGreaterThan(0)
    const d = await store().consume(key, rules, 2)
    expect([d.allowed, d.rules[0]!.remaining]).toEqual([true, 0])
    // More than the whole limit never fits.
    const tooBig = await store().consume(freshKey('cost-too-big'), rules, 11)
    expect(tooBig.allowed).toBe(false)
    expect(tooBig.retryAfterMs).toBeGreaterThan(0)
  })

  it.each(ALGORITHMS)('%s: cost 0 and peek charge nothing', async (algorithm) => {
    const rules = [rule(algorithm, 3, HOUR)]
    const key = freshKey('peek')
    for (let i = 0; i < 3; i++) {
      const peeked = await store().peek(key, rules, 1)
      expect(peeked).toMatchObject({ allowed: true, retryAfterMs: 0 })
      expect(peeked.rules[0]!.remaining).toBe(2)
      const free = await store().consume(key, rules, 0)
      expect(free.allowed).toBe(true)
      expect(free.rules[0]!.remaining).toBe(3)
    }
    const peekTooMuch = await store().peek(key, rules, 4)
    expect(peekTooMuch.allowed).toBe(false)
    expect((await store().consume(key, rules, 1)).rules[0]!.remaining).toBe(2)
    await consumeTimes(store(), key, rules, 2)
    const deniedPeek = await store().peek(key, rules, 1)
    expect(deniedPeek.allowed).toBe(false)
    expect(deniedPeek.retryAfterMs).toBeGreaterThan(0)
  })

  it.each(ALGORITHMS)('%s: reset forgets the key, and only that key', async (algorithm) => {
    const rules = [rule(algorithm, 2, HOUR, 'a'), rule(algorithm, 5, HOUR, 'b')]
    const key = freshKey('reset')
    const other = freshKey('reset-other')
    await consumeTimes(store(), key, rules, 2)
    await consumeTimes(store(), other, rules, 2)
    expect((await store().consume(key, rules, 1)).allowed).toBe(false)
    await store().reset(key, rules)
    const after = await store().consume(key, rules, 1)
    expect(after.allowed).toBe(true)
    expect(after.rules.map((r) => r.remaining)).toEqual([1, 4])
    expect((await store().consume(other, rules, 1)).allowed).toBe(false)
  })

  it.each(ALGORITHMS)('%s refills after waiting', async (algorithm) => {
    const rules = [rule(algorithm, 2, 300)]
    const key = freshKey('refill')
    const admitted = await consumeTimes(store(), key, rules, 2)
    expect(admitted.every((r) => r.allowed)).toBe(true)
    const denied = await store().consume(key, rules, 1)
    expect(denied.allowed).toBe(false)
    expect(denied.retryAfterMs).toBeLessThanOrEqual(600)
    await sleep(denied.retryAfterMs + 40)
    const again = await store().consume(key, rules, 1)
    expect(again.allowed).toBe(true)
    // After resetMs of an allowed answer the whole quota is back.
    await sleep(again.rules[0]!.resetMs + 40)
    const whole = await store().consume(key, rules, 0)
    expect(whole.rules[0]!.remaining).toBe(2)
  })

  it.each(ALGORITHMS)(
    '%s: many concurrent consumes of one key admit exactly `limit`, in call order, counting down',
    async (algorithm) => {
      // 150 calls in one turn: RedisRateLimitStore coalesces them into script calls of at most 64, decided in order.
      const rules = [rule(algorithm, 40, HOUR)]
      const key = freshKey('concurrent')
      const results = await Promise.all(Array.from({ length: 150 }, () => store().consume(key, rules, 1)))
      expect(results.filter((r) => r.allowed)).toHaveLength(40)
      expect(results.slice(0, 40).every((r) => r.allowed)).toBe(true)
      expect(results.map((r) => r.rules[0]!.remaining)).toEqual([
        ...Array.from({ length: 40 }, (_, i) => 39 - i),
        ...Array.from({ length: 110 }, () => 0),
      ])
      for (const denied of results.slice(40)) expect(denied.retryAfterMs).toBeGreaterThan(0)
      expect((await store().consume(key, rules, 0)).rules[0]!.remaining).toBe(0)
    },
  )

  it.each(ALGORITHMS)(
    '%s: concurrent consumes with mixed costs and rules decide as if sent one by one',
    async (algorithm) => {
      const two = [rule(algorithm, 12, HOUR, 'wide'), rule(algorithm, 6, HOUR, 'narrow')]
      const one = [two[0]!]
      const calls: Array<readonly [readonly ResolvedRule[], number]> = [
        [two, 2],
        [two, 0],
        [one, 3],
        [two, 5],
        [two, 1],
        [one, 0],
        [two, 3],
        [two, 1],
        [one, 4],
        [one, 2],
        [two, 1],
      ]
      const concurrentKey = freshKey('mixed-concurrent')
      const concurrent = await Promise.all(calls.map(([rules, cost]) => store().consume(concurrentKey, rules, cost)))
      const sequentialKey = freshKey('mixed-sequential')
      const sequential: RateLimitResult[] = []
      for (const [rules, cost] of calls) sequential.push(await store().consume(sequentialKey, rules, cost))
      const shape = (r: RateLimitResult) => [r.allowed, ...r.rules.map((x) => [x.allowed, x.remaining])]
      expect(concurrent.map(shape)).toEqual(sequential.map(shape))
    },
  )

  it('a peek or reset made after concurrent consumes sees them (nothing overtakes a waiting consume)', async () => {
    const rules = [rule('gcra', 5, HOUR)]
    const key = freshKey('order')
    const consumed = [store().consume(key, rules, 1), store().consume(key, rules, 1)]
    const peeked = store().peek(key, rules, 1)
    await Promise.all(consumed)
    expect((await peeked).rules[0]!.remaining).toBe(2)
    const before = store().consume(key, rules, 1)
    const reset = store().reset(key, rules)
    expect((await before).rules[0]!.remaining).toBe(2)
    await reset
    expect((await store().consume(key, rules, 1)).rules[0]!.remaining).toBe(4)
  })

  it('decides many keys independently (on a Cluster, across every master)', async () => {
    const rules = [rule('gcra', 3, HOUR, 'short'), rule('sliding-window', 5, HOUR, 'long')]
    const keys = Array.from({ length: 300 }, (_, i) => freshKey(`many-${i}`))
    const first = await Promise.all(keys.map((k) => store().consume(k, rules, 1)))
    expect(first.every((r) => r.allowed && r.rules[0]!.remaining === 2 && r.rules[1]!.remaining === 4)).toBe(true)
    const second = await Promise.all(keys.map((k) => store().consume(k, rules, 2)))
    expect(second.every((r) => r.allowed && r.rules[0]!.remaining === 0 && r.rules[1]!.remaining === 2)).toBe(true)
    const third = await Promise.all(keys.map((k) => store().consume(k, rules, 1)))
    expect(third.every((r) => !r.allowed && r.rules[0]!.allowed === false && r.rules[1]!.allowed)).toBe(true)
    const masters = target.harness!.masters?.()
    if (masters !== undefined) {
      expect(masters).toHaveLength(3)
      const sizes = await Promise.all(masters.map((m) => m.dbsize()))
      for (const size of sizes) expect(size).toBeGreaterThan(50)
    }
  })

  it.each(ALGORITHMS)('%s: a refund gives the charged units back in one step', async (algorithm) => {
    const rules = [rule(algorithm, 3, HOUR)]
    const key = freshKey('refund')
    await consumeTimes(store(), key, rules, 3)
    expect((await store().peek(key, rules, 1)).allowed).toBe(false)
    await store().refund!(key, rules, 1, 0)
    const again = await consumeTimes(store(), key, rules, 2)
    expect(again.map((r) => r.allowed)).toEqual([true, false])
  })

  it.each(ALGORITHMS)(
    '%s: a refund never goes below empty, and refunds nothing to an unknown key',
    async (algorithm) => {
      const rules = [rule(algorithm, 3, HOUR)]
      const key = freshKey('refund-floor')
      await store().refund!(key, rules, 2, 0)
      await store().consume(key, rules, 1)
      // Three units back for one charged: the key is empty again, not three units in credit.
      await store().refund!(key, rules, 3, 0)
      const results = await consumeTimes(store(), key, rules, 4)
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, false])
      expect(results.map((r) => r.rules[0]!.remaining)).toEqual([2, 1, 0, 0])
    },
  )

  it.each(ALGORITHMS)('%s: a refund gives back to every rule of the key at once', async (algorithm) => {
    const rules = [rule(algorithm, 10, HOUR, 'wide'), rule(algorithm, 2, HOUR, 'narrow')]
    const key = freshKey('refund-rules')
    await consumeTimes(store(), key, rules, 2)
    await store().refund!(key, rules, 1, 0)
    const next = await store().consume(key, rules, 1)
    expect(next.allowed).toBe(true)
    expect(next.rules.map((r) => r.remaining)).toEqual([8, 0])
  })

  it('fixed-window: a charge made before the current window began is not given back to it', async () => {
    const windowMs = 300
    const rules = [rule('fixed-window', 2, windowMs)]
    const key = freshKey('refund-window')
    await consumeTimes(store(), key, rules, 2)
    await sleep(windowMs + 50)
    // A new window, full again.
    expect((await consumeTimes(store(), key, rules, 2)).map((r) => r.allowed)).toEqual([true, true])
    // The first window's charge (older than this window) gives nothing back…
    await store().refund!(key, rules, 1, windowMs + 40)
    expect((await store().peek(key, rules, 1)).allowed).toBe(false)
    // …this window's does.
    await store().refund!(key, rules, 1, 0)
    expect((await store().consume(key, rules, 1)).allowed).toBe(true)
  })

  it('a refund made after a waiting consume of the same key does not overtake it', async () => {
    const rules = [rule('gcra', 2, HOUR)]
    const key = freshKey('refund-order')
    const charged = [store().consume(key, rules, 1), store().consume(key, rules, 1)]
    const refunded = store().refund!(key, rules, 1, 0)
    await Promise.all([...charged, refunded])
    expect((await store().consume(key, rules, 1)).allowed).toBe(true)
    expect((await store().consume(key, rules, 1)).allowed).toBe(false)
  })

  it('keys with braces or percent signs stay distinct and keep their rules together', async () => {
    const rules = [rule('gcra', 1, HOUR, 'a'), rule('fixed-window', 1, HOUR, 'b')]
    const run = freshKey('odd')
    // `}x` would make an empty hash tag (rules in different slots); `{a}` and `%7Ba%7D` must not collide.
    const keys = [`}${run}`, `{${run}}`, `%7B${run}%7D`, `${run}{`, `${run}%`]
    for (const key of keys) expect((await store().consume(key, rules, 1)).allowed).toBe(true)
    for (const key of keys) expect((await store().consume(key, rules, 1)).allowed).toBe(false)
  })
})

describe('RedisRateLimitStore state format', () => {
  it('reads the text state of earlier versions, so an upgrade keeps every count', async () => {
    const store = singleTarget.harness!.store
    const key = freshKey('legacy')
    const rules = [rule('fixed-window', 5, HOUR, 'f'), rule('gcra', 5, HOUR, 'g')]
    const interval = HOUR / 5
    // Written by the previous script: 3 of 5 used in the fixed window, 2 emission intervals ahead in gcra.
    await redis!.single.set(`${prefix}{${key}}:f`, `f ${Date.now() + HOUR} 3 0`, 'PX', HOUR)
    await redis!.single.set(`${prefix}{${key}}:g`, `g ${Date.now() + 2 * interval} 0 0`, 'PX', HOUR)
    const result = await store.consume(key, rules, 1)
    expect(result.rules.map((r) => r.remaining)).toEqual([1, 2])
    // Now stored in the binary form, and still counting from there.
    expect((await redis!.single.get(`${prefix}{${key}}:f`))?.[0]).toBe('F')
    expect((await store.consume(key, rules, 1)).rules.map((r) => r.remaining)).toEqual([0, 1])
  })
})

describe('MemoryRateLimitStore and RedisRateLimitStore decide the same sequence alike', () => {
  // Long windows so the few ms between the two calls of a step cannot change a count; the memory store's clock
  // is the wall clock so sliding windows align with Redis TIME.
  const sequences: Record<string, readonly ResolvedRule[]> = {
    gcra: [rule('gcra', 5, DAY, 'g')],
    'fixed-window': [rule('fixed-window', 5, DAY, 'f')],
    'sliding-window': [rule('sliding-window', 5, DAY, 's')],
    'all three together': [
      rule('gcra', 8, DAY, 'g'),
      rule('fixed-window', 6, DAY, 'f'),
      rule('sliding-window', 7, DAY, 's'),
    ],
  }
  type Step = readonly ['consume' | 'peek' | 'refund', number] | readonly ['reset']
  const steps: readonly Step[] = [
    ['peek', 1],
    ['consume', 1],
    ['consume', 2],
    ['consume', 0],
    ['peek', 4],
    ['consume', 4],
    ['consume', 1],
    ['consume', 9],
    ['consume', 1],
    ['refund', 2],
    ['peek', 1],
    ['consume', 1],
    ['consume', 3],
    ['refund', 9],
    ['consume', 3],
    ['reset'],
    ['consume', 5],
    ['consume', 1],
    ['consume', 2],
  ]

  for (const redisTarget of redisTargets) {
    it.each(Object.keys(sequences))(`%s on ${redisTarget.name}`, async (name) => {
      const rules = sequences[name]!
      const memory = new MemoryRateLimitStore({ now: Date.now })
      const redis = redisTarget.harness!.store
      const key = freshKey(`same-${name.replace(/ /g, '-')}`)
      for (const step of steps) {
        if (step[0] === 'reset') {
          await memory.reset(key)
          await redis.reset(key, rules)
          continue
        }
        if (step[0] === 'refund') {
          memory.refund(key, rules, step[1], 0)
          await redis.refund!(key, rules, step[1], 0)
          continue
        }
        const [operation, cost] = step
        const expected = memory[operation](key, rules, cost)
        const actual = await redis[operation](key, rules, cost)
        const label = `${operation}(${cost})`
        expect({ label, allowed: actual.allowed }).toEqual({ label, allowed: expected.allowed })
        expect(actual.rules.map((r) => [r.allowed, r.remaining])).toEqual(
          expected.rules.map((r) => [r.allowed, r.remaining]),
        )
        // Times differ only by the moments the two stores were asked.
        expect(Math.abs(actual.retryAfterMs - expected.retryAfterMs)).toBeLessThan(100)
        actual.rules.forEach((r, i) => {
          expect(Math.abs(r.resetMs - expected.rules[i]!.resetMs)).toBeLessThan(100)
        })
      }
    })
  }
})
