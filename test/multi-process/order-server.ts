// The order server of the multi-process child processes: POST routes guarded by an idempotency policy each, on
// Express, Fastify or Koa as told, all calling one framework-free order function. Bundled into each worker.

import type { AddressInfo } from 'node:net'
import type { IdempotencyOptions } from '@breakwater/core'
import { idempotency as expressIdempotency } from '@breakwater/express'
import { idempotency as fastifyIdempotency } from '@breakwater/fastify'
import { idempotency as koaIdempotency } from '@breakwater/koa'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'

export type Framework = 'express' | 'fastify' | 'koa'

/** What a route runs: its Idempotency-Key, the `delayMs` query parameter, the parsed body; answers 201 JSON. */
export type CreateOrder = (key: string, delayMs: number, body: unknown) => Promise<object>

/** Serve `routes` (path → the route's own idempotency options, over `base`) on 127.0.0.1; resolves the port. */
export async function listenOrders(
  framework: Framework,
  base: IdempotencyOptions,
  routes: ReadonlyArray<readonly [path: string, options: IdempotencyOptions]>,
  createOrder: CreateOrder,
): Promise<number> {
  const delayOf = (url: string): number => Number(new URL(url, 'http://x').searchParams.get('delayMs') ?? 0)
  if (framework === 'fastify') {
    const app = Fastify()
    await app.register(fastifyIdempotency, { ...base, global: false })
    for (const [path, options] of routes) {
      app.post(path, { config: { idempotency: options } }, async (request, reply) => {
        reply.code(201)
        return createOrder(String(request.headers['idempotency-key']), delayOf(request.url), request.body)
      })
    }
    await app.listen({ host: '127.0.0.1', port: 0 })
    return (app.server.address() as AddressInfo).port
  }
  if (framework === 'express') {
    const app = express()
    app.use(express.json())
    for (const [path, options] of routes) {
      app.post(path, expressIdempotency({ ...base, ...options }), async (req, res) => {
        res.status(201).json(await createOrder(String(req.header('idempotency-key')), delayOf(req.url), req.body))
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
  for (const [path, options] of routes) {
    router.post(path, koaIdempotency({ ...base, ...options }), async (ctx) => {
      const body = (ctx.request as { body?: unknown }).body
      ctx.body = await createOrder(String(ctx.get('idempotency-key')), delayOf(ctx.url), body)
      ctx.status = 201
    })
  }
  app.use(router.routes())
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return (server.address() as AddressInfo).port
}
