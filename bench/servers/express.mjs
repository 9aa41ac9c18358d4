// Express hello-world server for one benchmark variant: `node servers/express.mjs <variant>`.

import express from 'express'
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

  // The floor under any policy (bench/overhead.mjs): what Express charges for one more middleware.
  noop: async () => ({ middleware: (_req, _res, next) => next() }),

  'breakwater-memory': async () => {
    const rateLimit = await breakwater('@breakwater/express', 'rateLimit')
    return { middleware: rateLimit({ limit: LIMIT, windowMs: WINDOW_MS }) }
  },

  'breakwater-redis': async () => {
    const rateLimit = await breakwater('@breakwater/express', 'rateLimit')
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
    const loadShedding = await breakwater('@breakwater/express', 'loadShedding')
    return {
      middleware: loadShedding({ limit: { algorithm: 'gradient2', initialLimit: 256, minLimit: 256, maxLimit: 1000 } }),
    }
  },

  // A 30 s budget never fires here: this measures arming and clearing one deadline per request.
  'breakwater-timeout': async () => {
    const timeout = await breakwater('@breakwater/express', 'timeout')
    return { middleware: timeout({ timeoutMs: WINDOW_MS / 2 }) }
  },

  'express-rate-limit-memory': async () => {
    const { rateLimit } = await import('express-rate-limit')
    return { middleware: rateLimit({ limit: LIMIT, windowMs: WINDOW_MS }) }
  },

  'express-rate-limit-redis': async () => {
    const { rateLimit } = await import('express-rate-limit')
    const { RedisRateLimitStore } = await import('rate-limit-redis')
    const client = await connectRedis()
    const store = new RedisRateLimitStore({ sendCommand: (command, ...args) => client.call(command, ...args) })
    return { client, middleware: rateLimit({ limit: LIMIT, windowMs: WINDOW_MS, store }) }
  },

  'rate-limiter-flexible-memory': async () => {
    const { RateLimiterMemory } = await import('rate-limiter-flexible')
    return { middleware: flexibleMiddleware(new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 })) }
  },

  'rate-limiter-flexible-redis': async () => {
    const { RateLimiterRedis } = await import('rate-limiter-flexible')
    const client = await connectRedis()
    const limiter = new RateLimiterRedis({ storeClient: client, points: LIMIT, duration: WINDOW_MS / 1000 })
    return { client, middleware: flexibleMiddleware(limiter) }
  },
}

/** rate-limiter-flexible ships no Express middleware; this is the one its README shows, keyed by client IP. */
function flexibleMiddleware(limiter) {
  return function rateLimiterFlexible(req, res, next) {
    limiter.consume(req.ip).then(
      () => next(),
      () => res.status(429).send('Too Many Requests'),
    )
  }
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('express', name, Object.keys(VARIANTS))
const { middleware, client } = await setup()

const app = express()
if (middleware) app.use(middleware)
app.get('/', (_req, res) => {
  res.json(PAYLOAD)
})

const server = app.listen(0, '127.0.0.1', () => ready(server.address().port))
exitOnSignal(() => client?.disconnect())
