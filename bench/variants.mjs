// What the benchmark runs: per framework, the bare server, Breakwater on each store, and the peers on each store.
// The driver (run.mjs) reads this list; each server file (servers/<framework>.mjs) implements the same names.

/**
 * @typedef {object} Variant
 * @property {string} name      passed to the server process
 * @property {'none' | 'memory' | 'redis'} store
 * @property {'none' | 'breakwater' | 'peer' | 'reference'} kind  `reference`: a yardstick (an empty middleware)
 * @property {string} label     library shown in the table
 * @property {number} [reference] ratio vs bare published for this peer (REFERENCE.md "Rate limiting" peers, one run)
 * @property {number} [target]  a fixed ratio vs bare this Breakwater row must reach (policies without a peer row)
 * @property {string} [relativeTo] with `target`: the ratio is against this variant's row instead of bare's
 * @property {boolean} [optional] left out of the default run (time budget); runs when `--only` names it
 * @property {object} [load] extra autocannon options of this row (headers, per-request setup)
 * @property {boolean} [noTarget] measured and reported beside bare, judged against no target
 * @property {string} [baseline] the row this one's ratios divide by (default: bare); the many-keys rows use
 *   `bare-many`, bare under the same load
 */

let idempotencyKeys = 0
/** autocannon `setupRequest`: a new Idempotency-Key on every request (the idempotency miss path). */
function freshIdempotencyKey(request) {
  return { ...request, headers: { ...request.headers, 'idempotency-key': `bench-miss-${++idempotencyKeys}` } }
}

/** Client keys of the many-keys rows, and the Zipf exponent of their popularity (key k is drawn ∝ 1 / k^s). */
export const MANY_KEYS = 10_000
const ZIPF_S = 1
/** Cumulative distribution of the many-keys rows' clients, for a binary search per request. */
const zipfCdf = (() => {
  const weights = Array.from({ length: MANY_KEYS }, (_, k) => 1 / (k + 1) ** ZIPF_S)
  const total = weights.reduce((a, b) => a + b, 0)
  let sum = 0
  return Float64Array.from(weights, (w) => (sum += w / total))
})()
/** A fixed-seed generator (mulberry32), so every row and every run draws the same sequence of clients. */
let zipfSeed = 0x5eed
function nextRandom() {
  zipfSeed = (zipfSeed + 0x6d2b79f5) | 0
  let t = Math.imul(zipfSeed ^ (zipfSeed >>> 15), 1 | zipfSeed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
/** The next client of the many-keys rows: an index in [0, 10,000) with Zipf-like skew (s = 1). */
export function zipfIndex() {
  const u = nextRandom()
  let lo = 0
  let hi = MANY_KEYS - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (zipfCdf[mid] < u) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** autocannon `setupRequest`: an `x-client` header drawn from 10,000 keys with Zipf-like skew (s = 1). */
function zipfClient(request) {
  return { ...request, headers: { ...request.headers, 'x-client': `client-${zipfIndex()}` } }
}
/** The load of the many-keys rows. */
const MANY = { load: { requests: [{ setupRequest: zipfClient }] }, baseline: 'bare-many' }

/** @type {Record<'express' | 'fastify' | 'koa', Variant[]>} */
export const VARIANTS = {
  express: [
    { name: 'bare', store: 'none', kind: 'none', label: 'express (no limiter)' },
    // The floor under any policy: an empty middleware. Not in the default run; bench/overhead.mjs and --only use it.
    { name: 'noop', store: 'none', kind: 'reference', label: 'an empty middleware', optional: true, noTarget: true },
    { name: 'breakwater-memory', store: 'memory', kind: 'breakwater', label: '@breakwater/express' },
    {
      name: 'breakwater-redis',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/express + RedisRateLimitStore',
    },
    {
      name: 'breakwater-timeout',
      store: 'none',
      kind: 'breakwater',
      label: '@breakwater/express timeout()',
      target: 0.97,
    },
    {
      name: 'breakwater-load-shedding',
      store: 'none',
      kind: 'breakwater',
      label: '@breakwater/express loadShedding()',
      target: 0.97,
    },
    { name: 'express-rate-limit-memory', store: 'memory', kind: 'peer', label: 'express-rate-limit', reference: 0.89 },
    {
      name: 'express-rate-limit-redis',
      store: 'redis',
      kind: 'peer',
      label: 'express-rate-limit + rate-limit-redis',
      reference: 0.77,
    },
    {
      name: 'rate-limiter-flexible-memory',
      store: 'memory',
      kind: 'peer',
      label: 'rate-limiter-flexible (Memory)',
      optional: true,
    },
    {
      name: 'rate-limiter-flexible-redis',
      store: 'redis',
      kind: 'peer',
      label: 'rate-limiter-flexible (Redis)',
      reference: 0.92,
    },
  ],
  fastify: [
    { name: 'bare', store: 'none', kind: 'none', label: 'fastify (no limiter)' },
    // The floor under any policy: an empty onRequest hook. Not in the default run; bench/overhead.mjs and --only use it.
    {
      name: 'noop',
      store: 'none',
      kind: 'reference',
      label: 'an empty onRequest hook',
      optional: true,
      noTarget: true,
    },
    // The floor under any limiter sending the two IETF fields: a hook setting them to constants, nothing else.
    {
      name: 'noop-headers',
      store: 'none',
      kind: 'reference',
      label: 'an onRequest hook setting RateLimit and RateLimit-Policy to constants',
      optional: true,
      noTarget: true,
    },
    { name: 'breakwater-memory', store: 'memory', kind: 'breakwater', label: '@breakwater/fastify' },
    // Issue 18: the same limiter with @breakwater/otel on the real metrics SDK, judged against the uninstrumented
    // row above (≥ 0.95 of its throughput): the cost of recording each decision.
    {
      name: 'breakwater-memory-otel',
      store: 'memory',
      kind: 'breakwater',
      label: '@breakwater/fastify + @breakwater/otel (sdk-metrics)',
      target: 0.95,
      relativeTo: 'breakwater-memory',
    },
    // Diagnostic: the same limiter sending no headers, to separate the limiter's cost from the cost of emitting
    // two more response headers through Fastify and Node.
    {
      name: 'breakwater-memory-no-headers',
      store: 'memory',
      kind: 'breakwater',
      label: '@breakwater/fastify, headers: false',
      optional: true,
      noTarget: true,
    },
    {
      name: 'breakwater-redis',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + RedisRateLimitStore',
    },
    // The floor under any exact Redis-backed limiter: one round trip per request (a script that only returns 1,
    // through the same auto-pipelining client) and the two constant fields. No key is read or written.
    {
      name: 'noop-redis-headers',
      store: 'redis',
      kind: 'reference',
      label: 'an onRequest hook awaiting one trivial EVALSHA, then setting the two fields to constants',
      optional: true,
      noTarget: true,
    },
    // Issue 21, past the floor: hot keys decided in-process from a leased slice of their quota (opt-in).
    {
      name: 'breakwater-redis-lease',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + LeasingRateLimitStore(RedisRateLimitStore)',
    },
    // Issue 21: decided in-process between syncs with Redis (every 100 ms), a bounded over-admission (opt-in).
    {
      name: 'breakwater-redis-approx',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + ApproximateRateLimitStore(RedisRateLimitStore)',
    },
    {
      name: 'rate-limiter-flexible-redis',
      store: 'redis',
      kind: 'peer',
      label: 'rate-limiter-flexible (Redis) in an onRequest hook',
      optional: true,
    },
    // The many-keys rows: 10,000 client keys (an `x-client` header every limiter keys by) with Zipf-like skew,
    // so a design that only helps one hot key shows it. Divided by `bare-many`: bare under the same load.
    {
      name: 'bare-many',
      store: 'none',
      kind: 'reference',
      label: 'fastify (no limiter), 10,000 Zipf keys',
      noTarget: true,
      ...MANY,
    },
    {
      name: 'noop-redis-headers-many',
      store: 'redis',
      kind: 'reference',
      label: 'the one-EVALSHA floor, 10,000 Zipf keys',
      noTarget: true,
      ...MANY,
    },
    {
      name: 'breakwater-redis-many',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + RedisRateLimitStore, 10,000 Zipf keys',
      ...MANY,
    },
    {
      name: 'breakwater-redis-lease-many',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + LeasingRateLimitStore(RedisRateLimitStore), 10,000 Zipf keys',
      ...MANY,
    },
    {
      name: 'breakwater-redis-approx-many',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify + ApproximateRateLimitStore(RedisRateLimitStore), 10,000 Zipf keys',
      ...MANY,
    },
    {
      name: 'rate-limiter-flexible-redis-many',
      store: 'redis',
      kind: 'peer',
      label: 'rate-limiter-flexible (Redis), 10,000 Zipf keys',
      optional: true,
      ...MANY,
    },
    {
      name: 'fastify-rate-limit-redis-many',
      store: 'redis',
      kind: 'peer',
      label: '@fastify/rate-limit (redis), 10,000 Zipf keys',
      ...MANY,
    },
    {
      name: 'breakwater-timeout',
      store: 'none',
      kind: 'breakwater',
      label: '@breakwater/fastify timeout',
      target: 0.97,
    },
    {
      name: 'breakwater-load-shedding',
      store: 'none',
      kind: 'breakwater',
      label: '@breakwater/fastify loadShedding',
      target: 0.97,
    },
    // Idempotency (issue 3): bare's own GET / plus an Idempotency-Key header (the policy covers GET here, so the
    // ratio measures the policy, not body parsing). Replay: one key, stored once before the run. Miss: a fresh
    // key per request, so every request claims and completes in Redis (two round trips), reported without a target.
    {
      name: 'breakwater-idempotency-replay',
      store: 'memory',
      kind: 'breakwater',
      label: '@breakwater/fastify idempotency (replay)',
      target: 0.9,
      load: { headers: { 'idempotency-key': 'bench-replay' } },
    },
    {
      name: 'breakwater-idempotency-miss',
      store: 'redis',
      kind: 'breakwater',
      label: '@breakwater/fastify idempotency (miss) + RedisIdempotencyStore',
      noTarget: true,
      load: { requests: [{ setupRequest: freshIdempotencyKey }] },
    },
    { name: 'fastify-rate-limit-memory', store: 'memory', kind: 'peer', label: '@fastify/rate-limit', reference: 0.76 },
    {
      name: 'fastify-rate-limit-redis',
      store: 'redis',
      kind: 'peer',
      label: '@fastify/rate-limit (redis)',
      reference: 0.43,
    },
  ],
  koa: [
    { name: 'bare', store: 'none', kind: 'none', label: 'koa (no limiter)' },
    // The floor under any policy: an empty middleware. Not in the default run; bench/overhead.mjs and --only use it.
    { name: 'noop', store: 'none', kind: 'reference', label: 'an empty middleware', optional: true, noTarget: true },
    { name: 'breakwater-memory', store: 'memory', kind: 'breakwater', label: '@breakwater/koa' },
    { name: 'breakwater-redis', store: 'redis', kind: 'breakwater', label: '@breakwater/koa + RedisRateLimitStore' },
    { name: 'breakwater-timeout', store: 'none', kind: 'breakwater', label: '@breakwater/koa timeout()', target: 0.97 },
    {
      name: 'breakwater-load-shedding',
      store: 'none',
      kind: 'breakwater',
      label: '@breakwater/koa loadShedding()',
      target: 0.97,
    },
    { name: 'koa-ratelimit-memory', store: 'memory', kind: 'peer', label: 'koa-ratelimit (memory)', reference: 0.85 },
    { name: 'koa-ratelimit-redis', store: 'redis', kind: 'peer', label: 'koa-ratelimit (redis)', reference: 0.7 },
  ],
}

export const FRAMEWORKS = Object.keys(VARIANTS)

/**
 * The published target of a Breakwater row, given the ratios measured in this run for its framework.
 * Fastify has absolute targets; Express and Koa must match the best peer on the same store.
 *
 * @returns {{ min: number, text: string, peer?: string } | undefined}
 */
export function targetOf(framework, variant, ratios) {
  if (variant.kind !== 'breakwater' || variant.noTarget) return undefined
  // Timeouts (issue 4): the middleware on the hot path keeps ≥ 0.97 of bare throughput on every framework.
  if (variant.target !== undefined && variant.relativeTo !== undefined) {
    // The row's ratio vs bare must reach target × the reference row's ratio vs bare (both from this run).
    const reference = ratios.get(variant.relativeTo)
    if (reference === undefined) return { min: Number.NaN, text: `${variant.relativeTo} (not measured)` }
    const min = variant.target * reference
    return { min, text: `≥ ${variant.target.toFixed(2)} × ${variant.relativeTo} (${min.toFixed(2)} of bare)` }
  }
  if (variant.target !== undefined) return { min: variant.target, text: `≥ ${variant.target.toFixed(2)} of bare` }
  if (framework === 'fastify') {
    return variant.store === 'memory' ? { min: 0.95, text: '≥ 0.95' } : { min: 0.8, text: '≥ 0.80' }
  }
  let best
  for (const peer of VARIANTS[framework]) {
    if (peer.kind !== 'peer' || peer.store !== variant.store) continue
    const ratio = ratios.get(peer.name)
    if (ratio !== undefined && (best === undefined || ratio > best.ratio)) best = { ratio, label: peer.label }
  }
  if (best === undefined) return { min: Number.NaN, text: 'best peer (not measured)' }
  return { min: best.ratio, text: `≥ ${best.ratio.toFixed(2)} (${best.label})`, peer: best.label }
}
