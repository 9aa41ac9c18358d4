// A child process of the idempotency multi-process test: an HTTP server (Express, Fastify or Koa, as told) whose
// POST /orders is guarded by RedisIdempotencyStore on its own ioredis client. Counts executions in Redis, so
// the parent sees what every process really ran. Bundled from the sources by idempotency.test.ts.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencyOptions } from '@breakwater/core'
import { RedisIdempotencyStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { type Framework, listenOrders } from './order-server.js'

interface Job {
  url: string
  prefix: string
  framework: Framework
  lockTtlMs: number
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job
const client = new Redis(job.url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 })
const options: IdempotencyOptions = {
  store: new RedisIdempotencyStore({ client, prefix: job.prefix }),
  scope: (request) => request.header('authorization'),
  lockTtlMs: job.lockTtlMs,
  storeTimeoutMs: 5000, // two shared cores under a 200-request burst: slow is fine here, failing is not
}

/** The order handler: counts its start and its completion in Redis, holds for `delayMs`, answers a fresh id. */
async function createOrder(_key: string, delayMs: number, body: unknown): Promise<object> {
  await client.incr(`${job.prefix}started`)
  if (delayMs > 0) await sleep(delayMs)
  await client.incr(`${job.prefix}executed`)
  return { id: randomUUID(), pid: process.pid, body }
}

client.once('ready', async () => {
  process.send?.({ port: await listenOrders(job.framework, options, [['/orders', {}]], createOrder) })
})
process.once('disconnect', () => process.exit(0))
