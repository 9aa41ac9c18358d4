// Client-side CPU per rate-limit decision on Redis, without HTTP: `limiter.check()` through each store, in waves of
// 32 (as 32 connections' requests arrive in one event-loop turn), one key or 10,000 Zipf keys, the shapes
// interleaved in one process so they share the machine's state. CPU time of this process (process.cpuUsage), not
// wall clock: it moves far less than throughput on a shared machine, but it is not an instruction count.
// Usage: node bench/decisions.mjs [--decisions 20000] [--rounds 2]   (after npx -y pnpm@10 build)

import { parseArgs } from 'node:util'
import { startRedis, stop } from './lib/processes.mjs'
import { breakwater, REDIS_CLIENT_OPTIONS } from './servers/common.mjs'
import { zipfIndex } from './variants.mjs'

const { values: flags } = parseArgs({
  options: { decisions: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '2' } },
})
const DECISIONS = Number(flags.decisions)
const ROUNDS = Number(flags.rounds)
const WAVE = 32

const createRateLimiter = await breakwater('@breakwater/core', 'createRateLimiter')
const LeasingRateLimitStore = await breakwater('@breakwater/core', 'LeasingRateLimitStore')
const ApproximateRateLimitStore = await breakwater('@breakwater/core', 'ApproximateRateLimitStore')
const RedisRateLimitStore = await breakwater('@breakwater/redis', 'RedisRateLimitStore')
const { Redis } = await import('ioredis')

const redis = await startRedis()
const client = new Redis(redis.url, REDIS_CLIENT_OPTIONS)
await client.ping()
client.defineCommand('benchNoop', { numberOfKeys: 1, lua: 'return 1' })

const view = (ip) => ({ method: 'GET', path: '/', ip, header: () => undefined, signal: undefined })
const limiterOf = (store) => createRateLimiter({ limit: 1e9, windowMs: 60_000, store })
const shapes = {
  'one EVALSHA per decision (floor)': { check: (ip) => client.benchNoop(`bw:{${ip}}:default`) },
  'exact RedisRateLimitStore (coalesced)': limiterOf(new RedisRateLimitStore({ client, prefix: 'e:' })),
  LeasingRateLimitStore: limiterOf(
    new LeasingRateLimitStore({ store: new RedisRateLimitStore({ client, prefix: 'l:' }) }),
  ),
  ApproximateRateLimitStore: limiterOf(
    new ApproximateRateLimitStore({ store: new RedisRateLimitStore({ client, prefix: 'a:' }) }),
  ),
}
const keyShapes = { 'one key': () => '127.0.0.1', '10,000 Zipf keys': () => `client-${zipfIndex()}` }

/** CPU µs per decision of `limiter` deciding `count` requests in waves of WAVE. */
async function measure(limiter, keyOf, count) {
  const ips = Array.from({ length: count }, keyOf)
  const start = process.cpuUsage()
  for (let i = 0; i < count; i += WAVE) {
    const wave = []
    for (let j = i; j < i + WAVE && j < count; j++) wave.push(limiter.check(view(ips[j])))
    await Promise.all(wave)
  }
  const used = process.cpuUsage(start)
  return (used.user + used.system) / count
}

const table = {}
for (let round = 1; round <= ROUNDS; round++) {
  for (const [keys, keyOf] of Object.entries(keyShapes)) {
    for (const [name, limiter] of Object.entries(shapes)) {
      const us = await measure(limiter, keyOf, DECISIONS)
      if (round === ROUNDS) {
        table[keys] ??= {}
        table[keys][name] = us
      }
      process.stderr.write(`round ${round}: ${keys}, ${name}: ${us.toFixed(1)} µs/decision\n`)
    }
  }
}
const names = Object.keys(shapes)
const lines = [`| shape | ${names.join(' | ')} |`, `|---|${names.map(() => '--:').join('|')}|`]
for (const [keys, row] of Object.entries(table)) {
  lines.push(`| ${keys} | ${names.map((n) => `${row[n].toFixed(1)} µs`).join(' | ')} |`)
}
process.stdout.write(`${lines.join('\n')}\n`)
client.disconnect()
redis.client.disconnect()
await stop(redis.child)
process.exit(0)
