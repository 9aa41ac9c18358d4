// What each adapter offers in its own framework's idiom, beyond the shared scenarios: Fastify's per-route
// `config.rateLimit` and instance decorator, named Express and Koa middleware. Real frameworks, real sockets.

import { rateLimit as expressRateLimit } from '@breakwater/express'
import {
  DeadlineExceededError,
  rateLimit as fastifyRateLimit,
  timeout as fastifyTimeout,
  isBreakwaterError,
  MemoryRateLimitStore,
} from '@breakwater/fastify'
import { rateLimit as koaRateLimit } from '@breakwater/koa'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { deadlineQueueStats } from '../../packages/core/src/timeout/request-context.js'
import { liveCount } from '../../packages/core/src/timeout/shutdown.js'
import { until } from './support.js'

describe('@breakwater/fastify', () => {
  let app: FastifyInstance | undefined
  afterEach(async () => {
    await app?.close()
    app = undefined
  })

  const listen = async (instance: FastifyInstance): Promise<string> => {
    app = instance
    return instance.listen({ host: '127.0.0.1', port: 0 })
  }

  it('with global: false limits only routes that have config.rateLimit, merged over the plugin options', async () => {
    const instance = Fastify()
    await instance.register(fastifyRateLimit, { global: false, windowMs: '1m', store: new MemoryRateLimitStore() })
    instance.get('/free', async () => 'free')
    instance.get('/limited', { config: { rateLimit: { limit: 1 } } }, async () => 'limited')
    const url = await listen(instance)
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/free`)).headers.get('ratelimit')).toBeNull()
    const first = await fetch(`${url}/limited`)
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=1;w=60') // windowMs from the plugin
    expect((await fetch(`${url}/limited`)).status).toBe(429)
    expect(instance.rateLimit.global).toBeUndefined()
    expect(instance.rateLimit.route('GET', '/limited')).toHaveLength(1)
  })

  it('lets a route opt out with config.rateLimit: false and replace the limits with its own', async () => {
    const instance = Fastify()
    await instance.register(fastifyRateLimit, { limit: 1, windowMs: '1m' })
    instance.get('/health', { config: { rateLimit: false } }, async () => 'ok')
    instance.get(
      '/search',
      { config: { rateLimit: { rules: [{ name: 'search', limit: 2, windowMs: '1s' }] } } },
      async () => 'found',
    )
    instance.get('/', async () => 'home')
    const url = await listen(instance)
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/health`)).status).toBe(200)
    expect((await fetch(`${url}/search`)).headers.get('ratelimit-policy')).toBe('"search";q=2;w=1')
    expect((await fetch(`${url}/search`)).status).toBe(200)
    expect((await fetch(`${url}/search`)).status).toBe(429)
    expect((await fetch(url)).status).toBe(200) // the global limiter counts separately from /search
    expect((await fetch(url)).status).toBe(429)
  })

  it('sends rejections through the reply so onSend hooks and onResponse see them', async () => {
    const instance = Fastify()
    const seen: number[] = []
    instance.addHook('onSend', async (_request, reply, payload) => {
      reply.header('x-on-send', 'yes')
      return payload
    })
    instance.addHook('onResponse', async (_request, reply) => {
      seen.push(reply.statusCode)
    })
    await instance.register(fastifyRateLimit, { limit: 1, windowMs: '1m' })
    instance.get('/', async () => 'ok')
    const url = await listen(instance)
    await fetch(url)
    const denied = await fetch(url)
    expect(denied.status).toBe(429)
    expect(denied.headers.get('x-on-send')).toBe('yes')
    expect(seen).toEqual([200, 429])
  })

  it('shares a GET route’s limiter with the HEAD route Fastify derives from it', async () => {
    const instance = Fastify()
    await instance.register(fastifyRateLimit, { global: false })
    instance.get('/doc', { config: { rateLimit: { limit: 2, windowMs: '1m' } } }, async () => 'doc')
    const url = await listen(instance)
    expect((await fetch(`${url}/doc`, { method: 'HEAD' })).status).toBe(200)
    expect((await fetch(`${url}/doc`)).status).toBe(200)
    expect((await fetch(`${url}/doc`, { method: 'HEAD' })).status).toBe(429)
  })

  it('resets a key in every limiter through fastify.rateLimit.reset', async () => {
    const instance = Fastify()
    await instance.register(fastifyRateLimit, { limit: 1, windowMs: '1h' })
    instance.get('/', async () => 'home')
    instance.get('/other', { config: { rateLimit: { limit: 1 } } }, async () => 'other')
    const url = await listen(instance)
    for (const path of ['/', '/other']) {
      await fetch(url + path)
      expect((await fetch(url + path)).status).toBe(429)
    }
    await instance.rateLimit.reset('127.0.0.1')
    expect((await fetch(url)).status).toBe(200)
    expect((await fetch(`${url}/other`)).status).toBe(200)
    expect(await instance.rateLimit.global?.peek('127.0.0.1')).toMatchObject({ allowed: false })
  })

  it('keeps the timeout’s answers under handler wrappers registered after it (await, .then, .catch, .finally)', async () => {
    const instance = Fastify()
    await instance.register(fastifyTimeout, { timeoutMs: '5s' })
    const settled: string[] = []
    // Other plugins wrap route handlers too and treat the result as a Promise; each style must see it settle.
    instance.addHook('onRoute', (route) => {
      const handler = route.handler as (...args: unknown[]) => PromiseLike<unknown>
      const style = route.url.split('/')[2]
      route.handler = async function wrapped(this: unknown, ...args: unknown[]) {
        const result = handler.apply(this, args) as Promise<unknown>
        if (style === 'await') return await result
        if (style === 'then') return result.then((value) => value)
        if (style === 'catch') return result.catch((error: unknown) => Promise.reject(error))
        return result.finally(() => settled.push(route.url))
      } as never
    })
    for (const style of ['await', 'then', 'catch', 'finally']) {
      instance.get(`/ok/${style}`, async () => ({ style }))
      instance.get(`/late/${style}`, async () => {
        throw new DeadlineExceededError('the upstream call ran out of budget', 50, 10)
      })
    }
    const url = await listen(instance)
    for (const style of ['await', 'then', 'catch', 'finally']) {
      const ok = await fetch(`${url}/ok/${style}`)
      expect(ok.status).toBe(200)
      expect(await ok.json()).toEqual({ style })
      const late = await fetch(`${url}/late/${style}`)
      expect(late.status).toBe(504)
      expect(late.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await late.json()).toMatchObject({ code: 'BW_DEADLINE_EXCEEDED' })
    }
    expect(settled).toEqual(['/ok/finally', '/late/finally'])
  })

  it('ends the timeout’s lifecycle of a request a later hook answered before its handler could run', async () => {
    const instance = Fastify()
    await instance.register(fastifyTimeout, { timeoutMs: '30s' })
    // Authentication-style hooks after the timeout's: one answers synchronously, one after a body was parsed.
    instance.addHook('preHandler', (request, reply, done) => {
      if (request.headers.authorization === undefined) reply.code(401).send({ error: 'who are you?' })
      else done()
    })
    instance.addHook('preHandler', async (request, reply) => {
      if ((request.body as { deny?: boolean } | undefined)?.deny === true) return reply.code(403).send({ no: 1 })
    })
    const handled: string[] = []
    instance.all('/api/private', async (request) => {
      handled.push(request.method)
      return { ok: true }
    })
    const url = await listen(instance)
    const live = liveCount()
    const statuses = []
    for (let i = 0; i < 20; i++) {
      statuses.push((await fetch(`${url}/api/private`)).status)
      const denied = await fetch(`${url}/api/private`, {
        method: 'POST',
        headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
        body: JSON.stringify({ deny: true }),
      })
      statuses.push(denied.status)
    }
    expect(new Set(statuses)).toEqual(new Set([401, 403]))
    expect(handled).toEqual([])
    // Nothing waits for the 30 s deadline: each request left the live list and the deadline queue with its response.
    await until(() => liveCount() === live && deadlineQueueStats().waiting === 0)
  })

  it('rejects invalid options at registration with BW_INVALID_OPTION naming the option', async () => {
    const instance = Fastify()
    instance.register(fastifyRateLimit, { limit: -1, windowMs: '1m' })
    const error = await instance.ready().then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isBreakwaterError(error) && error.code).toBe('BW_INVALID_OPTION')
    expect(String(error)).toMatch(/"limit"/)
    app = instance
  })
})

describe('@breakwater/express and @breakwater/koa', () => {
  it('return named middleware (it shows in stack traces) with its limiter attached', () => {
    for (const middleware of [
      expressRateLimit({ limit: 1, windowMs: 1000 }),
      koaRateLimit({ limit: 1, windowMs: 1000 }),
    ]) {
      expect(middleware.name).toBe('rateLimitMiddleware')
      expect(typeof middleware.limiter.reset).toBe('function')
    }
  })

  it('reject invalid options at construction with BW_INVALID_OPTION', () => {
    expect(() => expressRateLimit({ limit: 1, windowMs: 'soon' })).toThrow(/"windowMs"/)
    expect(() => koaRateLimit({ limit: 0, windowMs: 1000 })).toThrow(/"limit"/)
  })
})
