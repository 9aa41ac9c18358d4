// A real server for the SIGTERM tests, one per framework (argv[2]): health probes first, a timeout for every
// other route, `/work?ms=N` waiting N ms on the request's signal, `/hang` waiting until its signal aborts.
// It prints `listening <port>` and one JSON line per shutdown phase and request outcome on stdout.

import { subscribe } from 'node:diagnostics_channel'
import type { Server } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { GracefulShutdownOptions, RequestContext, ShutdownPhaseEvent } from '@breakwater/core'
import * as breakwaterExpress from '@breakwater/express'
import * as breakwaterFastify from '@breakwater/fastify'
import * as breakwaterKoa from '@breakwater/koa'
import Router from '@koa/router'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'

const framework = process.argv[2]
const options: GracefulShutdownOptions = {
  drainDelayMs: Number(process.env.DRAIN_MS),
  timeoutMs: Number(process.env.TIMEOUT_MS),
  hooks: [{ name: 'flush', run: () => print({ hook: 'flush' }) }],
}

function print(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

subscribe('breakwater:shutdown:phase', (message) => {
  const { phase, reason, exitCode } = message as ShutdownPhaseEvent
  print({ phase, reason, exitCode })
})

/** What the routes do, framework-free. */
async function work(context: RequestContext, ms: number): Promise<{ waited: number }> {
  print({ started: ms })
  try {
    await sleep(ms, undefined, { signal: context.signal })
  } catch (error) {
    print({ aborted: ms, kind: (error as { cause?: { kind?: string } }).cause?.kind })
    throw error
  }
  print({ completed: ms })
  return { waited: ms }
}
const HANG_MS = 600_000

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.once('listening', resolve))
  return (server.address() as { port: number }).port
}

let port: number
if (framework === 'express') {
  const { gracefulShutdown, health, timeout, timeoutErrorHandler } = breakwaterExpress
  const app = express()
  const probes = health({ started: true })
  app.use(probes)
  app.use(timeout({ timeoutMs: '1m' }))
  app.get('/work', async (req, res, next) => {
    work(req.breakwater as RequestContext, Number(req.query.ms)).then((body) => res.json(body), next)
  })
  app.get('/hang', async (req, _res, next) => {
    work(req.breakwater as RequestContext, HANG_MS).catch(next)
  })
  app.use(timeoutErrorHandler())
  const server = app.listen(0, '127.0.0.1')
  port = await listen(server)
  gracefulShutdown(server, options)
} else if (framework === 'fastify') {
  const { gracefulShutdown, health, timeout } = breakwaterFastify
  const app = Fastify()
  await app.register(health, { started: true })
  await app.register(timeout, { timeoutMs: '1m' })
  app.get('/work', async (request) =>
    work(request.breakwater as RequestContext, Number((request.query as { ms: string }).ms)),
  )
  app.get('/hang', async (request) => work(request.breakwater as RequestContext, HANG_MS))
  await app.listen({ host: '127.0.0.1', port: 0 })
  port = (app.server.address() as { port: number }).port
  gracefulShutdown(app, options)
} else if (framework === 'koa') {
  const { gracefulShutdown, health, timeout } = breakwaterKoa
  const app = new Koa()
  app.on('error', () => {}) // the aborted /hang after its 503: nothing to log
  app.use(health({ started: true }))
  app.use(timeout({ timeoutMs: '1m' }))
  const router = new Router()
  router.get('/work', async (ctx) => {
    ctx.body = await work(ctx.breakwater as RequestContext, Number(ctx.query.ms))
  })
  router.get('/hang', async (ctx) => {
    ctx.body = await work(ctx.breakwater as RequestContext, HANG_MS)
  })
  app.use(router.routes())
  const server = app.listen(0, '127.0.0.1')
  port = await listen(server)
  gracefulShutdown(server, options)
} else {
  throw new Error(`unknown framework ${framework}`)
}
print({ listening: port })
