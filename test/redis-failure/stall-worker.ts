// A child process of the completion-stall test: an HTTP server (Express, Fastify or Koa, as told) whose order
// routes are guarded by RedisIdempotencyStore on its own ioredis client — `/orders` with a long lock,
// `/orders-short-lock` with a short one. Executions are reported to the parent over IPC, not counted in Redis:
// Redis is paused while handlers run. Bundled from the sources by completion-stall.test.ts.

import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencyOptions } from '@breakwater/core'
import { idempotency as expressIdempotency } from '@breakwater/express'
import { idempotency as fastifyIdempotency } from '@breakwater/fastify'
import { idempotency as koaIdempotency } from '@breakwater/koa'
import { RedisIdempotencyStore } from '@breakwater/redis'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import Koa from 'koa'

export interface StallJob {
  url: string
  prefix: string
  framework: 'express' | 'fastify' | 'koa'
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
const store = new RedisIdempotencyStore({ client, prefix: job.prefix })
const base: IdempotencyOptions = {
  store,
  scope: (request) => request.header('authorization'),
  storeTimeoutMs: job.storeTimeoutMs,
}
const longLock: IdempotencyOptions = { lockTtlMs: job.longLockMs }
const shortLock: IdempotencyOptions = { lockTtlMs: job.shortLockMs }

/** The order handler: reports its start, holds for `delayMs`, reports its end, answers a fresh id. */
async function createOrder(key: string, delayMs: number): Promise<{ id: string; pid: number }> {
  process.send?.({ type: 'started', key } satisfies ExecutionMessage)
  if (delayMs > 0) await sleep(delayMs)
  const id = randomUUID()
  process.send?.({ type: 'executed', key, id } satisfies ExecutionMessage)
  return { id, pid: process.pid }
}
const delayOf = (url: string): number => Number(new URL(url, 'http://x').searchParams.get('delayMs') ?? 0)

async function listen(): Promise<number> {
  if (job.framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyIdempotency, { ...base, global: false })
    for (const [path, config] of [
      ['/orders', longLock],
      ['/orders-short-lock', shortLock],
    ] as const) {
      app.post(path, { config: { idempotency: config } }, async (request, reply) => {
        reply.code(201)
        return createOrder(String(request.headers['idempotency-key']), delayOf(request.url))
      })
    }
    await app.listen({ host: '127.0.0.1', port: 0 })
    return (app.server.address() as AddressInfo).port
  }
  if (job.framework === 'express') {
    const app = express()
    app.use(express.json())
    for (const [path, config] of [
      ['/orders', longLock],
      ['/orders-short-lock', shortLock],
    ] as const) {
      app.post(path, expressIdempotency({ ...base, ...config }), async (req, res) => {
        res.status(201).json(await createOrder(String(req.header('idempotency-key')), delayOf(req.url)))
      })
    }
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    return (server.address() as AddressInfo).port
  }
  const app = new Koa()
  app.use(async (ctx, next) => {
    const chunks: Buffer[] = []
    for await (const chunk of ctx.req) chunks.push(chunk as Buffer)
    ;(ctx.request as { body?: unknown }).body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined
    await next()
  })
  const router = new Router()
  for (const [path, config] of [
    ['/orders', longLock],
    ['/orders-short-lock', shortLock],
  ] as const) {
    router.post(path, koaIdempotency({ ...base, ...config }), async (ctx) => {
      ctx.status = 201
      ctx.body = await createOrder(String(ctx.get('idempotency-key')), delayOf(ctx.url))
    })
  }
  app.use(router.routes())
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return (server.address() as AddressInfo).port
}

client.once('ready', async () => {
  process.send?.({ port: await listen() })
})
process.once('disconnect', () => process.exit(0))
