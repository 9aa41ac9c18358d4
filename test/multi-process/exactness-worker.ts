// A child process of the exactness test: hammers one key through its own RedisRateLimitStore and ioredis client, then
// reports how many requests were admitted. Bundled from the sources by exactness.test.ts before it runs.

import {
  type Algorithm,
  ApproximateRateLimitStore,
  LeasingRateLimitStore,
  type RateLimitStore,
  type ResolvedRule,
} from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Redis } from 'ioredis'

interface Job {
  url: string
  prefix: string
  key: string
  rules: ResolvedRule[]
  attempts: number
  concurrency: number
  /**
   * `exact`: every decision in Redis. `lease`: through a LeasingRateLimitStore with `lease`'s options.
   * `approximate`: through an ApproximateRateLimitStore with `approximate`'s options.
   */
  mode: 'exact' | 'lease' | 'approximate'
  lease?: { maxSlice: number; maxShare: number; leaseMs: number }
  approximate?: { maxLocal: number; maxShare: number; syncMs: number }
}

export interface WorkerReport {
  admitted: number
  denied: number
  errors: string[]
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job
const client = new Redis(job.url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 })
const redisStore = new RedisRateLimitStore({ client, prefix: job.prefix })
const store: RateLimitStore =
  job.mode === 'lease'
    ? new LeasingRateLimitStore({ store: redisStore, ...job.lease })
    : job.mode === 'approximate'
      ? new ApproximateRateLimitStore({ store: redisStore, ...job.approximate })
      : redisStore
const rules = job.rules.map((r) => Object.freeze({ ...r, algorithm: r.algorithm as Algorithm }))
const report: WorkerReport = { admitted: 0, denied: 0, errors: [] }

async function hammer(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    try {
      const result = await store.consume(job.key, rules, 1)
      if (result.allowed) report.admitted++
      else report.denied++
    } catch (error) {
      report.errors.push(String(error))
    }
  }
}

client.once('ready', () => {
  process.send?.('ready')
})
// All workers start together when the parent says so, to make the requests really race.
process.once('message', async () => {
  // The parent picks attempts divisible by concurrency.
  const perLoop = Math.ceil(job.attempts / job.concurrency)
  await Promise.all(Array.from({ length: job.concurrency }, () => hammer(perLoop)))
  // A leasing store hands its unused units back, an approximate one sends its pending units, before the process goes.
  await store.shutdown?.()
  process.send?.(report, () => {
    client.disconnect()
    process.disconnect()
  })
})
