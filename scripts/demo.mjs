#!/usr/bin/env node
// The demo: starts an example app on the memory store, drives traffic at it, and prints what each policy did.
// Usage: npx -y pnpm@10 demo [express|fastify|koa|all] [--no-build]   (default fastify; `all` runs the three in turn)
// It builds the packages first, quietly (their output is shown only when the build fails); --no-build skips that.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { circuitBreakerSection } from './demo-breaker.mjs'
import { healthSection } from './demo-health.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const FRAMEWORKS = ['express', 'fastify', 'koa']
const args = process.argv.slice(2)
const build = !args.includes('--no-build')
const choice = args.find((arg) => arg !== '--no-build') ?? 'fastify'
if (choice === 'outage') await import('./demo-outage.mjs') // the outage replay; it exits when done
const frameworks = choice === 'all' ? FRAMEWORKS : [choice]
if (!frameworks.every((f) => FRAMEWORKS.includes(f)) || args.length > (build ? 1 : 2)) {
  console.error(`usage: npx -y pnpm@10 demo [${FRAMEWORKS.join('|')}|all|outage] [--no-build]`)
  process.exit(2)
}
console.log(
  `Breakwater demo: the ${frameworks.join(', ')} example app on the memory store, driven with real requests over\n` +
    'loopback. Each section says what it sends, what came back, and what it means: rate limiting, timeouts,\n' +
    'load shedding, idempotency, a circuit breaker, then health probes and a graceful drain on SIGTERM.\n',
)
if (build) buildQuietly()

/** `pnpm build` with its output kept back unless it fails (the pnpm running this script, else npx's pnpm 10). */
function buildQuietly() {
  process.stdout.write('Building the packages… ')
  const execPath = process.env.npm_execpath
  const [command, args] =
    execPath !== undefined && /pnpm/.test(execPath) && /\.c?js$/.test(execPath)
      ? [process.execPath, [execPath, 'build']]
      : ['npx', ['-y', 'pnpm@10', 'build']]
  const build = spawnSync(command, args, { cwd: root, encoding: 'utf8' })
  if (build.status !== 0 || !existsSync(`${root}packages/core/dist/index.js`)) {
    console.log('failed:\n')
    console.log(build.stdout, build.stderr, build.error ?? '')
    process.exit(1)
  }
  console.log('done.')
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
    server.on('error', reject)
  })

/** Start an example app and resolve once it prints its "listening" line. */
async function startExample(framework, extraEnv = {}) {
  const port = await freePort()
  const env = { ...process.env, PORT: String(port), ...extraEnv }
  delete env.REDIS_URL // the demo shows the memory store
  delete env.TRUST_PROXY
  const child = spawn(process.execPath, ['src/server.js'], {
    cwd: `${root}examples/${framework}`,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${framework} example did not start within 15 s`)), 15_000)
    child.once('exit', (code) => reject(new Error(`${framework} example exited with code ${code}`)))
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      if (chunk.includes('listening')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  return {
    base: `http://127.0.0.1:${port}`,
    child,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve)
        child.kill('SIGTERM')
        setTimeout(() => child.kill('SIGKILL'), 5_000).unref()
      }),
  }
}

const pick = (headers, names) => Object.fromEntries(names.filter((n) => headers.has(n)).map((n) => [n, headers.get(n)]))

async function rateLimitSection(base) {
  console.log('\n  Rate limiting — GET /api/limited (5 requests per 10 s per client), 8 requests:')
  console.log(
    '    RateLimit: "default";r=4;t=2 reads: GCRA, r = requests remaining, t = seconds until the quota is whole\n' +
      '    again (rounded up). 5 per 10 s refills one unit every 10 s / 5 = 2 s, so each request spent adds 2 s to\n' +
      '    t. On a 429, t is the wait until one unit is back, the same as Retry-After.',
  )
  let allowed = 0
  let limited = 0
  let firstAllowed
  let firstLimited
  for (let i = 1; i <= 8; i++) {
    const response = await fetch(`${base}/api/limited`)
    const body = await response.text()
    const headers = pick(response.headers, ['ratelimit', 'ratelimit-policy', 'retry-after', 'content-type'])
    console.log(`    #${i} ${response.status}  RateLimit: ${headers.ratelimit ?? '-'}`)
    if (response.status === 200) {
      allowed++
      firstAllowed ??= headers
    } else if (response.status === 429) {
      limited++
      firstLimited ??= { headers, body: JSON.parse(body) }
    }
  }
  console.log(`    → allowed ${allowed}, limited ${limited}`)
  console.log('    sample allowed headers:', JSON.stringify(firstAllowed))
  console.log('    sample 429:', JSON.stringify(firstLimited, null, 2).replaceAll('\n', '\n    '))
}

async function timeoutSection(base) {
  console.log(
    '\n  Timeouts — GET /api/slow?ms=N (the handler waits N ms on the request signal; the route allows 200 ms):',
  )
  for (const ms of [50, 1500]) {
    const started = performance.now()
    const response = await fetch(`${base}/api/slow?ms=${ms}`)
    const elapsed = Math.round(performance.now() - started)
    const body = await response.text()
    console.log(`    ms=${ms}: ${response.status} after ${elapsed} ms  ${body}`)
  }
  const stats = await (await fetch(`${base}/debug/stats`)).json()
  console.log(
    `    → the 1500 ms request was cut off at its 200 ms deadline and its wait cancelled: slowStarted ${stats.slowStarted}, slowAborted ${stats.slowAborted}, slowCompleted ${stats.slowCompleted}`,
  )
}

async function loadSheddingSection(base) {
  console.log(
    '\n  Load shedding — GET /api/work?ms=300 (4 may run at once), 16 at the same moment, then one more once they finish:',
  )
  const started = performance.now()
  const results = await Promise.all(
    Array.from({ length: 16 }, async () => {
      const response = await fetch(`${base}/api/work?ms=300`)
      const body = await response.json()
      return {
        status: response.status,
        ms: Math.round(performance.now() - started),
        retryAfter: response.headers.get('retry-after'),
        body,
      }
    }),
  )
  const ok = results.filter((r) => r.status === 200)
  const shed = results.filter((r) => r.status === 503)
  const range = (list) => (list.length === 0 ? '-' : `${Math.min(...list)}–${Math.max(...list)} ms`)
  console.log(`    accepted ${ok.length}: answered after ${range(ok.map((r) => r.ms))} (the work takes 300 ms)`)
  console.log(
    `    shed ${shed.length}: 503 after ${range(shed.map((r) => r.ms))}, Retry-After ${[...new Set(shed.map((r) => r.retryAfter))].sort().join(', ')} s (jittered)`,
  )
  if (shed[0]) console.log('    sample 503 body:', JSON.stringify(shed[0].body))
  const again = performance.now()
  const after = await fetch(`${base}/api/work?ms=20`)
  await after.arrayBuffer()
  console.log(`    → once the burst is over: ${after.status} in ${Math.round(performance.now() - again)} ms`)
}

async function idempotencySection(base) {
  console.log('\n  Idempotency — POST /api/orders with an Idempotency-Key (required; keys scoped per bearer token):')
  const order = (key, body, query = '') =>
    fetch(`${base}/api/orders${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer alice', 'idempotency-key': `"${key}"` },
      body: JSON.stringify(body),
    })
  const key = `demo-${Date.now()}`
  const first = await order(key, { item: 'book', quantity: 1 })
  console.log(`    first attempt:   ${first.status}  ${await first.text()}`)
  const retry = await order(key, { item: 'book', quantity: 1 })
  console.log(
    `    retry, same key: ${retry.status}  ${await retry.text()}  Idempotent-Replayed: ${retry.headers.get('idempotent-replayed')}`,
  )
  const changed = await order(key, { item: 'book', quantity: 2 })
  console.log(`    same key, other body: ${changed.status} ${(await changed.json()).code}`)
  const burstKey = `${key}-burst`
  const burst = await Promise.all(
    Array.from({ length: 10 }, async () => {
      const response = await order(burstKey, { item: 'pen' }, '?delayMs=300')
      await response.arrayBuffer()
      return response.status
    }),
  )
  const count = (status) => burst.filter((s) => s === status).length
  console.log(
    `    10 concurrent duplicates (handler holds 300 ms): ${count(201)} × 201, ${count(409)} × 409 + Retry-After`,
  )
  const settled = await order(burstKey, { item: 'pen' })
  await settled.arrayBuffer()
  console.log(
    `    one more once it finished: ${settled.status}, replayed: ${settled.headers.get('idempotent-replayed')}`,
  )
  const stats = await (await fetch(`${base}/debug/stats`)).json()
  console.log(`    → 13 requests, ordersExecuted ${stats.ordersExecuted}: each key executed exactly once`)
}

/** A few of the OpenTelemetry series the app exposes at GET /metrics (OTEL=prometheus, @breakwater/otel). */
async function metricsSection(base) {
  const text = await (await fetch(`${base}/metrics`)).text()
  const wanted = /^breakwater_(rate_limit_requests|timeout_requests|load_shedding_requests|idempotency_requests)_total/
  const lines = text.split('\n').filter((line) => wanted.test(line))
  console.log('\n  OpenTelemetry metrics — GET /metrics (a few series):')
  for (const line of lines) console.log(`    ${line.replace(/,?otel_scope_(name|version)="[^"]*"/g, '')}`)
}

/**
 * Sections that start an example app of their own (with the environment they need), in the order shown. To add
 * one: a module beside this one exporting `async (startExample, framework) => {…}`, and one line here.
 */
const ownAppSections = [circuitBreakerSection, healthSection]

for (const framework of frameworks) {
  console.log(`\n=== ${framework} example on the memory store ===`)
  const app = await startExample(framework, { OTEL: 'prometheus' })
  try {
    await rateLimitSection(app.base)
    await timeoutSection(app.base)
    await loadSheddingSection(app.base)
    await idempotencySection(app.base)
    const stats = await (await fetch(`${app.base}/debug/stats`)).json()
    console.log('\n  What the handlers really did — GET /debug/stats:', JSON.stringify(stats))
    await metricsSection(app.base)
  } finally {
    await app.stop()
  }
  for (const section of ownAppSections) await section(startExample, framework)
}
