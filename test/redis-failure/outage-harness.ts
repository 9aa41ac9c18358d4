// Shared by the Redis failure suites: one limiter per failure policy on one ioredis client, and probes that
// tell whether a decision came from Redis, from the fallback store, or from the failure policy.

import diagnostics from 'node:diagnostics_channel'
import {
  createRateLimiter,
  type Decision,
  isStoreError,
  MemoryRateLimitStore,
  type RateLimiter,
  type RequestView,
  type ResolvedRule,
  type StoreErrorEvent,
  type StoreFailurePolicy,
} from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Redis, type RedisOptions } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisServer, sleep, startRedis, untilReady } from '../support/redis-server.js'

/** Generous for a loaded CI machine: the first call on a fresh client also loads the Lua script. */
export const STORE_TIMEOUT_MS = 250
/** Timers, the event loop and a busy 2-core machine: how late past the store timeout an answer may come. */
export const SLACK_MS = 200
export const LIMIT = 100
const WINDOW_MS = 3_600_000

/** The two ways users configure ioredis: its defaults (offline queue on) and the settings the README recommends. */
export const CLIENT_SETTINGS: ReadonlyArray<{ name: string; options: RedisOptions }> = [
  { name: 'ioredis defaults (offline queue on)', options: {} },
  {
    name: 'the recommended settings',
    options: { enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true },
  },
]

export type PolicyName = 'fail-open' | 'fail-closed' | 'fallback'
export const POLICIES: readonly PolicyName[] = ['fail-open', 'fail-closed', 'fallback']

export interface PolicyLimiter {
  policy: PolicyName
  limiter: RateLimiter
  /** The memory store the `fallback` policy decides with while Redis is away. */
  fallback: MemoryRateLimitStore | undefined
}

/** The rule every limiter here resolves to, to read its state in Redis directly. */
const RULES: readonly ResolvedRule[] = [
  Object.freeze({ name: 'default', algorithm: 'gcra', limit: LIMIT, windowMs: WINDOW_MS, burst: LIMIT }),
]
export const CLIENT_IP = '192.0.2.10'

export const view: RequestView = {
  method: 'GET',
  path: '/',
  ip: CLIENT_IP,
  header: () => undefined,
  signal: new AbortController().signal,
}

/** One limiter per policy, all on `client`, ids unique to `label`. */
export function limitersFor(client: Redis, label: string): PolicyLimiter[] {
  return POLICIES.map((policy) => {
    const fallback = policy === 'fallback' ? new MemoryRateLimitStore() : undefined
    const onStoreError: StoreFailurePolicy = fallback ? { fallback } : (policy as 'fail-open' | 'fail-closed')
    const limiter = createRateLimiter({
      id: `${label}-${policy}`,
      limit: LIMIT,
      windowMs: WINDOW_MS,
      store: new RedisRateLimitStore({ client }),
      storeTimeoutMs: STORE_TIMEOUT_MS,
      onStoreError,
    })
    return { policy, limiter, fallback }
  })
}

/** Units left for `limiter`'s client in Redis, read through a separate, healthy client. */
export async function remainingInRedis(admin: Redis, limiter: RateLimiter): Promise<number> {
  const result = await new RedisRateLimitStore({ client: admin }).consume(`${limiter.id}:${CLIENT_IP}`, RULES, 0)
  return result.rules[0]!.remaining
}

/** The `r` of the draft-8 `RateLimit` header, if the decision carries one. */
export function remainingHeader(decision: Decision): number | undefined {
  const value = decision.headers?.find(([name]) => name === 'RateLimit')?.[1]
  const match = value === undefined ? null : /;r=(\d+)/.exec(value)
  return match ? Number(match[1]) : undefined
}

/** Run a check and measure how long it took to answer. */
export async function timedCheck(limiter: RateLimiter): Promise<{ decision: Decision; ms: number }> {
  const started = performance.now()
  const decision = await limiter.check(view)
  return { decision, ms: performance.now() - started }
}

/** Collect `breakwater:store:error` events while the suite runs. */
export function recordStoreErrors(): { events: StoreErrorEvent[]; stop: () => void } {
  const events: StoreErrorEvent[] = []
  const listener = (message: unknown): void => {
    events.push(message as StoreErrorEvent)
  }
  diagnostics.subscribe('breakwater:store:error', listener)
  return { events, stop: () => diagnostics.unsubscribe('breakwater:store:error', listener) }
}

/** How a suite takes Redis away and brings it back. */
export interface Outage {
  /** "stopped" or "paused (SIGSTOP)", for test names. */
  name: string
  /** "restart" or "SIGCONT", for test names. */
  recovery: string
  begin(server: RedisServer): Promise<void> | void
  end(server: RedisServer): Promise<void> | void
  /** `kind` of the first store error: a dead server fails fast only without the offline queue. */
  firstErrorKind(options: RedisOptions): 'timeout' | 'error'
}

/**
 * The failure scenario, once per client setting: decisions from Redis; during the outage every check answers
 * within the store timeout as its policy says and errors are published; afterwards Redis decides again.
 */
export function describeOutage(outage: Outage): void {
  describe.each(CLIENT_SETTINGS)(`Redis ${outage.name}, client with $name`, ({ name, options }) => {
    let server: RedisServer
    let client: Redis
    let admin: Redis
    let limiters: PolicyLimiter[]
    let recorder: ReturnType<typeof recordStoreErrors>
    const label = `${outage.name}-${name}`.replace(/[^a-z]+/gi, '-')

    beforeAll(async () => {
      server = await startRedis()
      client = new Redis(server.url, options)
      admin = new Redis(server.url)
      // Connection errors during the outage are expected; without a listener ioredis logs each one.
      client.on('error', () => {})
      admin.on('error', () => {})
      await Promise.all([untilReady(client), untilReady(admin)])
      limiters = limitersFor(client, label)
      recorder = recordStoreErrors()
    })

    afterAll(async () => {
      recorder?.stop()
      client?.disconnect()
      admin?.disconnect()
      if (server?.running) server.resume()
      await server?.stop()
    })

    it('decides from Redis while it is up', async () => {
      for (const { limiter } of limiters) {
        const first = await limiter.check(view)
        const second = await limiter.check(view)
        expect([remainingHeader(first), remainingHeader(second)]).toEqual([LIMIT - 1, LIMIT - 2])
        expect(await remainingInRedis(admin, limiter)).toBe(LIMIT - 2)
      }
      expect(recorder.events).toEqual([])
    })

    it(`while ${outage.name}, every check answers within the store timeout, as its policy says`, async () => {
      await outage.begin(server)
      // Long enough to cover the guard's 1 s skip and at least one probe of the dead store.
      for (let round = 0; round < 8; round++) {
        const answers = await Promise.all(limiters.map(({ limiter }) => timedCheck(limiter)))
        answers.forEach(({ decision, ms }, i) => {
          const { policy } = limiters[i]!
          expect(ms, `${policy} answered in ${ms.toFixed(0)} ms`).toBeLessThanOrEqual(STORE_TIMEOUT_MS + SLACK_MS)
          if (policy === 'fail-open') expect(decision).toEqual({ action: 'continue', headers: undefined })
          if (policy === 'fail-closed') {
            expect(decision).toMatchObject({ action: 'reject', status: 503, body: { code: 'BW_STORE_UNAVAILABLE' } })
          }
          // The fallback memory store decides, from its own (empty) state.
          if (policy === 'fallback') {
            expect(decision.action).toBe('continue')
            expect(remainingHeader(decision)).toBe(LIMIT - 1 - round)
          }
        })
        await sleep(150)
      }
      for (const { policy, limiter } of limiters) {
        const events = recorder.events.filter((e) => e.policy === limiter.id)
        expect(events.length, `${policy} store errors`).toBeGreaterThan(0)
        expect(events[0]!.kind).toBe(outage.firstErrorKind(options))
        for (const event of events) {
          expect(event).toMatchObject({ operation: 'consume', action: policy })
          expect(isStoreError(event.error)).toBe(true)
          expect(event.durationSeconds).toBeLessThanOrEqual((STORE_TIMEOUT_MS + SLACK_MS) / 1000)
        }
      }
    })

    it(`decides from Redis again by itself after ${outage.recovery}`, async () => {
      await outage.end(server)
      const fallback = limiters.find((l) => l.policy === 'fallback')!.fallback!
      const key = `${label}-fallback:${CLIENT_IP}`
      const rules = [{ name: 'default', algorithm: 'gcra', limit: LIMIT, windowMs: 3_600_000, burst: LIMIT }] as const
      const fallbackBefore = fallback.consume(key, rules, 0).rules[0]!.remaining
      for (const { policy, limiter } of limiters) {
        // Back on Redis when two checks in a row each take exactly one unit from the key in Redis and report it.
        let streak = 0
        let previous = await remainingInRedis(admin, limiter)
        const deadline = Date.now() + 15_000
        while (streak < 2) {
          expect(Date.now(), `${policy} never went back to Redis`).toBeLessThan(deadline)
          const decision = await limiter.check(view)
          const inRedis = await remainingInRedis(admin, limiter)
          streak =
            decision.action === 'continue' && remainingHeader(decision) === inRedis && inRedis === previous - 1
              ? streak + 1
              : 0
          previous = inRedis
          if (streak < 2) await sleep(100)
        }
      }
      // Once Redis answers, the fallback store is no longer charged.
      expect(fallback.consume(key, rules, 0).rules[0]!.remaining).toBe(fallbackBefore)
    })
  })
}
