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

  // The floor under any policy (bench/overhead.mjs): what Fastify charges for one more onRequest hook.
  noop: async () => ({
    plugin: Object.assign(
      async (app) => {
        app.addHook('onRequest', (_request, _reply, done) => done())
      },
      { [Symbol.for('skip-override')]: true }, // not encapsulated, as fastify-plugin does: the hook reaches GET /
    ),
    options: {},
  }),

  // The floor under any limiter that sends the IETF fields: an onRequest hook that only sets `RateLimit` and
  // `RateLimit-Policy` to constant strings (as long as Breakwater's for this limit). No counting, no key.
  'noop-headers': async () => ({
    plugin: Object.assign(
      async (app) => {
        app.addHook('onRequest', (_request, reply, done) => {
          reply.header('ratelimit', '"default";r=999999999;t=60')
          reply.header('ratelimit-policy', '"default";q=1000000000;w=60')
          done()
        })
      },
      { [Symbol.for('skip-override')]: true },
    ),
    options: {},
  }),

  // The floor under any exact limiter on Redis: one round trip per request through the shared auto-pipelining
  // client (a script that reads nothing and returns 1, on a key shaped like Breakwater's), then the two fields.
  'noop-redis-headers': async () => noopRedisHeaders(() => '127.0.0.1'),

  // The floor on the many-keys rows: the same trivial script, on the request's own client key.
  'noop-redis-headers-many': async () => noopRedisHeaders(clientHeader),

  'bare-many': async () => ({}),

  'breakwater-memory': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    return { plugin: rateLimit, options: { limit: LIMIT, windowMs: WINDOW_MS } }
  },

  // The breakwater-memory row with @breakwater/otel installed on the real metrics SDK (a MeterProvider read by the
  // Prometheus exporter, as an app serving /metrics has it): what recording each decision costs a request.
  'breakwater-memory-otel': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    const instrument = await breakwater('@breakwater/otel', 'instrument')
    const { MeterProvider } = await import('@opentelemetry/sdk-metrics')
    const { PrometheusExporter } = await import('@opentelemetry/exporter-prometheus')
    const exporter = new PrometheusExporter({ preventServerStart: true })
    instrument({ meterProvider: new MeterProvider({ readers: [exporter] }) })
    return { plugin: rateLimit, options: { limit: LIMIT, windowMs: WINDOW_MS } }
  },

  'breakwater-memory-no-headers': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    return { plugin: rateLimit, options: { limit: LIMIT, windowMs: WINDOW_MS, headers: false } }
  },

  'breakwater-redis': async () => {
    const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
    const RedisRateLimitStore = await breakwater('@breakwater/redis', 'RedisRateLimitStore')
    const client = await connectRedis()
    return {
      client,
      plugin: rateLimit,
      options: { limit: LIMIT, windowMs: WINDOW_MS, store: new RedisRateLimitStore({ client }) },
    }
  },

  'breakwater-redis-lease': async () => redisLimiter(false, 'lease'),
  'breakwater-redis-approx': async () => redisLimiter(false, 'approximate'),
  'breakwater-redis-many': async () => redisLimiter(true, 'exact'),
  'breakwater-redis-lease-many': async () => redisLimiter(true, 'lease'),
  'breakwater-redis-approx-many': async () => redisLimiter(true, 'approximate'),

  // rate-limiter-flexible ships no Fastify plugin: an onRequest hook around RateLimiterRedis, keyed as the rows are.
  'rate-limiter-flexible-redis': async () => flexibleHook(() => '127.0.0.1'),
  'rate-limiter-flexible-redis-many': async () => flexibleHook(clientHeader),

  'fastify-rate-limit-redis-many': async () => {
    const { default: rateLimit } = await import('@fastify/rate-limit')
    const client = await connectRedis()
    return {
      client,
      plugin: rateLimit,
      options: { max: LIMIT, timeWindow: WINDOW_MS, redis: client, keyGenerator: clientHeader },
    }
  },

  // Adaptive (Gradient2) with a floor far above the 32 connections: never sheds, so this measures admitting,
  // releasing on response close and feeding the limiter, per request.
  'breakwater-load-shedding': async () => {
    const loadShedding = await breakwater('@breakwater/fastify', 'loadShedding')
    return {
      plugin: loadShedding,
      options: { limit: { algorithm: 'gradient2', initialLimit: 256, minLimit: 256, maxLimit: 1000 } },
    }
  },

  // A 30 s budget never fires here: this measures arming and clearing one deadline per request.
  'breakwater-timeout': async () => {
    const timeout = await breakwater('@breakwater/fastify', 'timeout')
    return { plugin: timeout, options: { timeoutMs: WINDOW_MS / 2 } }
  },

  // Idempotency: the policy covers GET so the request is bare's plus one header. The replay key is stored before
  // the server reports ready, so the run measures replays only (and the first wave gets no 409s).
  'breakwater-idempotency-replay': async () => {
    const idempotency = await breakwater('@breakwater/fastify', 'idempotency')
    const prime = (app) => app.inject({ method: 'GET', url: '/', headers: { 'idempotency-key': 'bench-replay' } })
    return { plugin: idempotency, options: { methods: ['GET'], scope: () => 'bench' }, prime }
  },

  'breakwater-idempotency-miss': async () => {
    const idempotency = await breakwater('@breakwater/fastify', 'idempotency')
    const RedisIdempotencyStore = await breakwater('@breakwater/redis', 'RedisIdempotencyStore')
    const client = await connectRedis()
    const store = new RedisIdempotencyStore({ client })
    return { client, plugin: idempotency, options: { methods: ['GET'], scope: () => 'bench', store } }
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

/** The one-round-trip floor: a hook awaiting one trivial script on the client's key, then setting the two fields. */
async function noopRedisHeaders(clientOf) {
  const client = await connectRedis()
  client.defineCommand('benchNoop', { numberOfKeys: 1, lua: 'return 1' })
  return {
    client,
    plugin: Object.assign(
      async (app) => {
        app.addHook('onRequest', (request, reply, done) => {
          client.benchNoop(`bw:{${clientOf(request)}}:default`).then(() => {
            reply.header('ratelimit', '"default";r=999999999;t=60')
            reply.header('ratelimit-policy', '"default";q=1000000000;w=60')
            done()
          }, done)
        })
      },
      { [Symbol.for('skip-override')]: true }, // not encapsulated, as fastify-plugin does: the hook reaches GET /
    ),
    options: {},
  }
}

/** The many-keys rows' client key: the `x-client` header autocannon sets. */
function clientHeader(request) {
  return request.headers['x-client'] ?? 'none'
}

/** rate-limiter-flexible's RateLimiterRedis in an onRequest hook (its README's middleware shape). */
async function flexibleHook(clientOf) {
  const { RateLimiterRedis } = await import('rate-limiter-flexible')
  const client = await connectRedis()
  const limiter = new RateLimiterRedis({ storeClient: client, points: LIMIT, duration: WINDOW_MS / 1000 })
  return {
    client,
    plugin: Object.assign(
      async (app) => {
        app.addHook('onRequest', (request, reply, done) => {
          limiter.consume(clientOf(request)).then(
            () => done(),
            () => reply.code(429).send('Too Many Requests'),
          )
        })
      },
      { [Symbol.for('skip-override')]: true },
    ),
    options: {},
  }
}

/**
 * Breakwater on Redis, keyed by `x-client` (`many`): `exact` (RedisRateLimitStore, coalescing a turn's decisions
 * into one script call), `lease` (LeasingRateLimitStore over it) or `approximate` (ApproximateRateLimitStore).
 */
async function redisLimiter(many, mode) {
  const rateLimit = await breakwater('@breakwater/fastify', 'rateLimit')
  const RedisRateLimitStore = await breakwater('@breakwater/redis', 'RedisRateLimitStore')
  const client = await connectRedis()
  const redisStore = new RedisRateLimitStore({ client })
  let store = redisStore
  if (mode === 'lease') {
    const LeasingRateLimitStore = await breakwater('@breakwater/core', 'LeasingRateLimitStore')
    store = new LeasingRateLimitStore({ store: redisStore })
  } else if (mode === 'approximate') {
    const ApproximateRateLimitStore = await breakwater('@breakwater/core', 'ApproximateRateLimitStore')
    store = new ApproximateRateLimitStore({ store: redisStore })
  }
  const key = many ? (request) => request.header('x-client') ?? 'none' : undefined
  return { client, plugin: rateLimit, options: { limit: LIMIT, windowMs: WINDOW_MS, store, ...(key && { key }) } }
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('fastify', name, Object.keys(VARIANTS))
const { plugin, options, client, prime } = await setup()

const app = Fastify({ logger: false })
if (plugin) await app.register(plugin, options)
app.get('/', async () => PAYLOAD)
await prime?.(app)

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
exitOnSignal(() => client?.disconnect())
