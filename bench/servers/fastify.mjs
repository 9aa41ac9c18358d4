// Fastify hello-world server for one benchmark variant: `node servers/fastify.mjs <variant>`.

import Fastify from 'fastify'
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

/** Each variant returns the plugin to register with its options (or nothing) and its Redis client, if any. */
const VARIANTS = {
  bare: async () => ({}),

  'breakwater-memory': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    return { plugin: rateLimit, options: { limit: LIMIT, windowMs: WINDOW_MS } }
  },

  'breakwater-redis': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    const RedisStore = await breakwater('@breakwater/redis', 'RedisStore')
    const client = await connectRedis()
    return {
      client,
      plugin: rateLimit,
      options: { limit: LIMIT, windowMs: WINDOW_MS, store: new RedisStore({ client }) },
    }
  },

  // A 30 s budget never fires here: this measures arming and clearing one deadline per request.
  'breakwater-timeout': async () => {
    const timeout = await breakwater('@breakwater/fastify', 'timeout')
    return { plugin: timeout, options: { timeoutMs: WINDOW_MS / 2 } }
  },

  'fastify-rate-limit-memory': async () => {
    const { default: rateLimit } = await import('@fastify/rate-limit')
    return { plugin: rateLimit, options: { max: LIMIT, timeWindow: WINDOW_MS } }
  },

  'fastify-rate-limit-redis': async () => {
    const { default: rateLimit } = await import('@fastify/rate-limit')
    const client = await connectRedis()
    return { client, plugin: rateLimit, options: { max: LIMIT, timeWindow: WINDOW_MS, redis: client } }
  },
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('fastify', name, Object.keys(VARIANTS))
const { plugin, options, client } = await setup()

const app = Fastify({ logger: false })
if (plugin) await app.register(plugin, options)
app.get('/', async () => PAYLOAD)

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
exitOnSignal(() => client?.disconnect())
