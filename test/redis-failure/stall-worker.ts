// A child process of the completion-stall test: an HTTP server (Express, Fastify or Koa, as told) whose order
// routes are guarded by RedisIdempotencyStore on its own ioredis client — `/orders` with a long lock,
// `/orders-short-lock` with a short one. Executions are reported to the parent over IPC, not counted in Redis:
// Redis is paused while handlers run. Bundled from the sources by completion-stall.test.ts.

import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencyOptions } from '@breakwater/core'
import { RedisIdempotencyStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { type Framework, listenOrders } from '../multi-process/order-server.js'

export interface StallJob {
  url: string
  prefix: string
  framework: Framework
  longLockMs: number
  shortLockMs: number
  storeTimeoutMs: number
}

/** What the worker tells its parent: a handler started or finished, for which Idempotency-Key. */
export interface ExecutionMessage {
  type: 'started' | 'executed'
  key: string
  id?: string
}

const job = JSON.parse(process.argv[2] ?? '{}') as StallJob
const client = new Redis(job.url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 })
client.on('error', () => {}) // the parent pauses Redis on purpose
const base: IdempotencyOptions = {
  store: new RedisIdempotencyStore({ client, prefix: job.prefix }),
  scope: (request) => request.header('authorization'),
  storeTimeoutMs: job.storeTimeoutMs,
}
const routes = [
  ['/orders', { lockTtlMs: job.longLockMs }],
  ['/orders-short-lock', { lockTtlMs: job.shortLockMs }],
] as const

/** The order handler: reports its start, holds for `delayMs`, reports its end, answers a fresh id. */
async function createOrder(key: string, delayMs: number): Promise<object> {
  process.send?.({ type: 'started', key } satisfies ExecutionMessage)
  if (delayMs > 0) await sleep(delayMs)
  const id = randomUUID()
  process.send?.({ type: 'executed', key, id } satisfies ExecutionMessage)
  return { id, pid: process.pid }
}

client.once('ready', async () => {
  process.send?.({ port: await listenOrders(job.framework, base, routes, createOrder) })
})
process.once('disconnect', () => process.exit(0))
