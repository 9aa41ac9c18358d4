#!/usr/bin/env node
// The demo: starts an example app on the memory store, drives traffic at it, and prints what each policy did.
// Usage: pnpm demo [express|fastify|koa]   (default fastify; `pnpm demo all` runs the three in turn)

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const FRAMEWORKS = ['express', 'fastify', 'koa']
const choice = process.argv[2] ?? 'fastify'
const frameworks = choice === 'all' ? FRAMEWORKS : [choice]
if (!frameworks.every((f) => FRAMEWORKS.includes(f))) {
  console.error(`usage: pnpm demo [${FRAMEWORKS.join('|')}|all]`)
  process.exit(2)
}
for (const pkg of ['core', ...frameworks]) {
  if (!existsSync(`${root}packages/${pkg}/dist/index.js`)) {
    console.error(`@breakwater/${pkg} is not built: run "pnpm build" (or "pnpm demo", which builds first)`)
    process.exit(1)
  }
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
async function startExample(framework) {
  const port = await freePort()
  const env = { ...process.env, PORT: String(port) }
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

for (const framework of frameworks) {
  console.log(`\n=== ${framework} example on the memory store ===`)
  const app = await startExample(framework)
  try {
    await rateLimitSection(app.base)
    await timeoutSection(app.base)
    const stats = await (await fetch(`${app.base}/debug/stats`)).json()
    console.log('\n  What the handlers really did — GET /debug/stats:', JSON.stringify(stats))
  } finally {
    await app.stop()
  }
}
