// A child process of the idempotency multi-process test: an HTTP server (Express, Fastify or Koa, as told) whose
// POST /orders is guarded by RedisIdempotencyStore on its own ioredis client. Counts executions in Redis, so
// the parent sees what every process really ran. Bundled from the sources by idempotency.test.ts.

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

interface Job {
  url: string
  prefix: string
  framework: 'express' | 'fastify' | 'koa'
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
async function createOrder(delayMs: number, body: unknown): Promise<{ id: string; pid: number; body: unknown }> {
  await client.incr(`${job.prefix}started`)
  if (delayMs > 0) await sleep(delayMs)
  await client.incr(`${job.prefix}executed`)
  return { id: randomUUID(), pid: process.pid, body }
}
const delayOf = (url: string): number => Number(new URL(url, 'http://x').searchParams.get('delayMs') ?? 0)

async function listen(): Promise<number> {
  if (job.framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyIdempotency, options)
    app.post('/orders', async (request, reply) => {
      reply.code(201)
      return createOrder(delayOf(request.url), request.body)
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return (app.server.address() as AddressInfo).port
  }
  if (job.framework === 'express') {
    const app = express()
    app.use(express.json())
    app.post('/orders', expressIdempotency(options), async (req, res) => {
      res.status(201).json(await createOrder(delayOf(req.url), req.body))
    })
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
  router.post('/orders', koaIdempotency(options), async (ctx) => {
    ctx.status = 201
    ctx.body = await createOrder(delayOf(ctx.url), (ctx.request as { body?: unknown }).body)
  })
  app.use(router.routes())
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return (server.address() as AddressInfo).port
}

client.once('ready', async () => {
  process.send?.({ port: await listen() })
})
process.once('disconnect', () => process.exit(0))
