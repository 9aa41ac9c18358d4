// Koa hello-world server for one benchmark variant: `node servers/koa.mjs <variant>`.

import Koa from 'koa'
import {
  breakwater,
  connectRedis,
  exitOnSignal,
  LIMIT,
  PAYLOAD,
  ready,
  unknownVariant,
  variantName,
  WINDOW_MS,
} from './common.mjs'

/** Each variant returns the middleware to mount (or nothing) and the Redis client it opened, if any. */
const VARIANTS = {
  bare: async () => ({}),

  // The floor under any policy (bench/overhead.mjs): what Koa charges for one more middleware.
  noop: async () => ({ middleware: (_ctx, next) => next() }),

  'breakwater-memory': async () => {
    const rateLimit = await breakwater('@breakwater/koa', 'rateLimit')
    return { middleware: rateLimit({ limit: LIMIT, windowMs: WINDOW_MS }) }
  },

  'breakwater-redis': async () => {
    const rateLimit = await breakwater('@breakwater/koa', 'rateLimit')
    const RedisRateLimitStore = await breakwater('@breakwater/redis', 'RedisRateLimitStore')
    const client = await connectRedis()
    return {
      client,
      middleware: rateLimit({ limit: LIMIT, windowMs: WINDOW_MS, store: new RedisRateLimitStore({ client }) }),
    }
  },

  // Adaptive (Gradient2) with a floor far above the 32 connections: never sheds, so this measures admitting,
  // releasing on response close and feeding the limiter, per request.
  'breakwater-load-shedding': async () => {
    const loadShedding = await breakwater('@breakwater/koa', 'loadShedding')
    return {
      middleware: loadShedding({ limit: { algorithm: 'gradient2', initialLimit: 256, minLimit: 256, maxLimit: 1000 } }),
    }
  },

  // A 30 s budget never fires here: this measures arming and clearing one deadline per request.
  'breakwater-timeout': async () => {
    const timeout = await breakwater('@breakwater/koa', 'timeout')
    return { middleware: timeout({ timeoutMs: WINDOW_MS / 2 }) }
  },

  'koa-ratelimit-memory': async () => {
    const { default: ratelimit } = await import('koa-ratelimit')
    return { middleware: ratelimit({ driver: 'memory', db: new Map(), max: LIMIT, duration: WINDOW_MS }) }
  },

  'koa-ratelimit-redis': async () => {
    const { default: ratelimit } = await import('koa-ratelimit')
    const client = await connectRedis()
    return { client, middleware: ratelimit({ driver: 'redis', db: client, max: LIMIT, duration: WINDOW_MS }) }
  },
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('koa', name, Object.keys(VARIANTS))
const { middleware, client } = await setup()

const app = new Koa()
app.silent = true
if (middleware) app.use(middleware)
app.use((ctx) => {
  ctx.body = PAYLOAD
})

const server = app.listen(0, '127.0.0.1', () => ready(server.address().port))
exitOnSignal(() => client?.disconnect())
