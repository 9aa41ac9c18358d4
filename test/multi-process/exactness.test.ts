// Four processes share one Redis and race for one 100-per-window quota: exactly 100 requests get through, for
// every algorithm, because each decision is one atomic script in Redis — not a read, then a write.

import { type ChildProcess, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Algorithm, ResolvedRule } from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleForChild } from '../support/bundle.js'
import { testRedisUrl, untilReady } from '../support/redis-server.js'
import type { WorkerReport } from './exactness-worker.js'

const PROCESSES = 4
const ATTEMPTS_PER_PROCESS = 150
const CONCURRENCY_PER_PROCESS = 15
const LIMIT = 100
const HOUR = 3_600_000
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
/** Inside the repository, so the bundle's `import 'ioredis'` resolves through test/node_modules. */
const OUT_DIR = here('./dist')
const prefix = `bw-exactness-${randomUUID().slice(0, 8)}:`

let admin: Redis

beforeAll(async () => {
  await bundleForChild(here('./exactness-worker.ts'))
  admin = new Redis(testRedisUrl())
  await untilReady(admin)
})

afterAll(() => {
  admin?.disconnect()
})

function rule(algorithm: Algorithm, limit: number, name: string): ResolvedRule {
  return Object.freeze({ name, algorithm, limit, windowMs: HOUR, burst: limit })
}

/** Run the workers against `key` and return their reports. */
async function race(
  key: string,
  rules: readonly ResolvedRule[],
  mode:
    | { mode: 'exact'; attempts?: number }
    | { mode: 'lease'; lease: typeof LEASE; attempts: number }
    | { mode: 'approximate'; approximate: typeof APPROXIMATE; attempts: number } = { mode: 'exact' },
): Promise<WorkerReport[]> {
  const job = JSON.stringify({
    url: testRedisUrl(),
    prefix,
    key,
    rules,
    attempts: ATTEMPTS_PER_PROCESS,
    concurrency: CONCURRENCY_PER_PROCESS,
    ...mode,
  })
  const workers: ChildProcess[] = Array.from({ length: PROCESSES }, () =>
    fork(`${OUT_DIR}/exactness-worker.js`, [job], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  )
  try {
    const reports = workers.map(
      (worker) =>
        new Promise<WorkerReport>((resolve, reject) => {
          worker.on('message', (message) => {
            if (message !== 'ready') resolve(message as WorkerReport)
          })
          worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)))
        }),
    )
    await Promise.all(workers.map((worker) => once(worker, 'message')))
    for (const worker of workers) worker.send('go')
    return await Promise.all(reports)
  } finally {
    for (const worker of workers) if (worker.exitCode === null) worker.kill()
  }
}

/** Leases of up to 16 units (5 % of a 1,000 limit allows 50), living 1 s. */
const LEASE = { maxSlice: 16, maxShare: 0.05, leaseMs: 1000 }
const LEASE_LIMIT = 1_000
const LEASE_ATTEMPTS = 390
/** Approximate: up to 16 units of a key admitted ahead of Redis per process (5 % of 1,000 would allow 50). */
const APPROXIMATE = { maxLocal: 16, maxShare: 0.05, syncMs: 50 }

describe(`leases: ${PROCESSES} processes × ${LEASE_ATTEMPTS} requests against one ${LEASE_LIMIT}-per-hour quota`, () => {
  it.each<Algorithm>(['gcra', 'fixed-window', 'sliding-window'])(
    '%s never over-admits; early denial stays within one slice per process; Redis counts exactly the admitted',
    async (algorithm) => {
      const key = `lease-${algorithm}`
      const rules = [rule(algorithm, LEASE_LIMIT, 'default')]
      const reports = await race(key, rules, { mode: 'lease', lease: LEASE, attempts: LEASE_ATTEMPTS })
      expect(reports.flatMap((r) => r.errors)).toEqual([])
      const admitted = reports.reduce((sum, r) => sum + r.admitted, 0)
      expect(admitted).toBeLessThanOrEqual(LEASE_LIMIT)
      expect(admitted).toBeGreaterThanOrEqual(LEASE_LIMIT - PROCESSES * LEASE.maxSlice)
      // Every unused unit was handed back: what Redis counts is exactly what was admitted.
      const state = await new RedisRateLimitStore({ client: admin, prefix }).consume(key, rules, 0)
      expect(state.rules[0]!.remaining).toBe(LEASE_LIMIT - admitted)
    },
  )
})

describe(`${PROCESSES} processes × ${ATTEMPTS_PER_PROCESS} requests against one ${LIMIT}-per-hour quota`, () => {
  it.each<Algorithm>(['gcra', 'fixed-window', 'sliding-window'])('%s admits exactly 100', async (algorithm) => {
    const key = `race-${algorithm}`
    const rules = [rule(algorithm, LIMIT, 'default')]
    const reports = await race(key, rules)
    expect(reports.flatMap((r) => r.errors)).toEqual([])
    expect(reports.reduce((sum, r) => sum + r.admitted, 0)).toBe(LIMIT)
    expect(reports.reduce((sum, r) => sum + r.denied, 0)).toBe(PROCESSES * ATTEMPTS_PER_PROCESS - LIMIT)
    const state = await new RedisRateLimitStore({ client: admin, prefix }).consume(key, rules, 0)
    expect(state.rules[0]!.remaining).toBe(0)
  })

  it('with two rules, the wider one is charged exactly for the 100 admitted requests', async () => {
    const key = 'race-two-rules'
    const rules = [rule('sliding-window', 1_000, 'wide'), rule('gcra', LIMIT, 'narrow')]
    const reports = await race(key, rules)
    expect(reports.flatMap((r) => r.errors)).toEqual([])
    expect(reports.reduce((sum, r) => sum + r.admitted, 0)).toBe(LIMIT)
    const state = await new RedisRateLimitStore({ client: admin, prefix }).consume(key, rules, 0)
    expect(state.rules.map((r) => r.remaining)).toEqual([1_000 - LIMIT, 0])
  })
})

describe(`admitted vs limit per mode: ${PROCESSES} processes × ${LEASE_ATTEMPTS} requests, one ${LEASE_LIMIT}-per-hour quota`, () => {
  // The README's bounds: exact admits the limit; leases never more (early denial ≤ P × slice); approximate at
  // most P × L more, L = min(maxLocal, maxShare × limit).
  const allowance = Math.min(APPROXIMATE.maxLocal, Math.floor(APPROXIMATE.maxShare * LEASE_LIMIT))
  const modes = {
    exact: { mode: 'exact' as const, attempts: LEASE_ATTEMPTS },
    lease: { mode: 'lease' as const, lease: LEASE, attempts: LEASE_ATTEMPTS },
    approximate: { mode: 'approximate' as const, approximate: APPROXIMATE, attempts: LEASE_ATTEMPTS },
  }
  const bounds = {
    exact: [LEASE_LIMIT, LEASE_LIMIT],
    lease: [LEASE_LIMIT - PROCESSES * LEASE.maxSlice, LEASE_LIMIT],
    approximate: [LEASE_LIMIT, LEASE_LIMIT + PROCESSES * allowance],
  } as const

  it.each<Algorithm>(['gcra', 'fixed-window', 'sliding-window'])(
    '%s: each mode admits within its stated bound, and Redis ends up counting the quota as used',
    async (algorithm) => {
      const measured: Record<string, number> = {}
      for (const [name, mode] of Object.entries(modes)) {
        const key = `modes-${algorithm}-${name}`
        const rules = [rule(algorithm, LEASE_LIMIT, 'default')]
        const reports = await race(key, rules, mode)
        expect(reports.flatMap((r) => r.errors)).toEqual([])
        const admitted = reports.reduce((sum, r) => sum + r.admitted, 0)
        measured[name] = admitted
        const [low, high] = bounds[name as keyof typeof bounds]
        expect({ mode: name, admitted, withinBound: admitted >= low && admitted <= high }).toEqual({
          mode: name,
          admitted,
          withinBound: true,
        })
        // Every admitted unit reached Redis (an over-admission fills the quota, never past it).
        const state = await new RedisRateLimitStore({ client: admin, prefix }).consume(key, rules, 0)
        expect(state.rules[0]!.remaining).toBe(Math.max(0, LEASE_LIMIT - admitted))
      }
      process.stdout.write(
        `admitted of ${LEASE_LIMIT} (${algorithm}, ${PROCESSES} × ${LEASE_ATTEMPTS} attempts): ${JSON.stringify(measured)}\n`,
      )
    },
  )
})
