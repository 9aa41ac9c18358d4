// Black-box check of the example apps (examples/<framework>/src/server.js): each is started as its own process
// on a free port, against the built packages, with the memory store and with Redis, and must honour the
// example contract of ARCHITECTURE.md for the routes that exist so far.

import { type ChildProcess, spawn } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { testRedisUrl } from '../support/redis-server.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const FRAMEWORKS = ['express', 'fastify', 'koa'] as const
const STORES = ['memory', 'redis'] as const

interface Example {
  url: string
  child: ChildProcess
  output: () => string
}

const running: Example[] = []

beforeAll(() => {
  const missing = ['core', 'redis', ...FRAMEWORKS].filter(
    (name) => !existsSync(`${root}packages/${name}/dist/index.js`),
  )
  if (missing.length > 0) {
    throw new Error(
      `The examples import the built packages, but ${missing.map((m) => `packages/${m}/dist`).join(', ')} is missing: run \`pnpm build\` first (the root \`pnpm test\` does).`,
    )
  }
})

afterEach(() => {
  for (const example of running.splice(0)) example.child.kill('SIGKILL')
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

async function startExample(framework: string, env: Record<string, string | undefined>): Promise<Example> {
  const port = await freePort()
  const { REDIS_URL: _, TRUST_PROXY: __, ...inherited } = process.env
  const child = spawn(process.execPath, ['src/server.js'], {
    cwd: `${root}examples/${framework}`,
    env: { ...inherited, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const example = { url: `http://127.0.0.1:${port}`, child, output: () => output }
  running.push(example)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${framework} example did not start in 15 s:\n${output}`)), 15_000)
    const check = () => {
      if (output.includes('listening on')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${framework} example exited with code ${code}:\n${output}`))
    })
  })
  return example
}

const randomIPv4 = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`

describe.each(FRAMEWORKS.flatMap((framework) => STORES.map((store) => [framework, store] as const)))(
  'examples/%s with the %s store',
  (framework, store) => {
    it('serves the example contract: /, /api/limited (5 per 10 s, then 429), /debug/stats, and exits on SIGTERM', async () => {
      // With Redis the apps share one server, so the client is a fresh proxied address: TRUST_PROXY is on.
      // With memory no proxy is trusted, and X-Forwarded-For must then be ignored.
      const env = store === 'redis' ? { REDIS_URL: testRedisUrl(), TRUST_PROXY: 'true' } : {}
      const example = await startExample(framework, env)
      expect(example.output()).toMatch(
        new RegExp(`^listening on ${example.url.replaceAll('.', '\\.')} \\(store: ${store}\\)$`, 'm'),
      )

      const home = await fetch(`${example.url}/`)
      expect(home.status).toBe(200)
      expect(await home.text()).toBe('ok')

      const client = randomIPv4()
      const limited = (forwardedFor = client) =>
        fetch(`${example.url}/api/limited`, { headers: { 'x-forwarded-for': forwardedFor } })
      for (let i = 0; i < 5; i++) {
        const res = await limited(store === 'memory' ? randomIPv4() : client)
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit')).toMatch(new RegExp(`^"default";r=${4 - i};t=\\d+$`))
        expect(res.headers.get('ratelimit-policy')).toBe('"default";q=5;w=10')
      }
      const denied = await limited(store === 'memory' ? randomIPv4() : client)
      expect(denied.status).toBe(429)
      expect(denied.headers.get('ratelimit')).toMatch(/^"default";r=0;t=\d+$/)
      expect(denied.headers.get('ratelimit-policy')).toBe('"default";q=5;w=10')
      expect(Number(denied.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(denied.headers.get('content-type')).toMatch(/^application\/problem\+json/)
      expect(await denied.json()).toMatchObject({ status: 429, code: 'BW_RATE_LIMITED' })
      if (store === 'redis') expect((await limited(randomIPv4())).status).toBe(200) // another proxied client

      const stats = await fetch(`${example.url}/debug/stats`)
      expect(await stats.json()).toEqual({
        limitedExecuted: store === 'redis' ? 6 : 5,
        limitedRejected: 1,
        slowStarted: 0,
        slowAborted: 0,
        slowCompleted: 0,
      })

      const exited = new Promise<number | null>((resolve) => example.child.once('exit', resolve))
      example.child.kill('SIGTERM')
      expect(await exited).toBe(0)
    })
  },
)

describe.each(FRAMEWORKS)('examples/%s timeouts', (framework) => {
  it('GET /api/slow answers within its 200 ms budget, else 503 at the deadline with the wait cancelled', async () => {
    const example = await startExample(framework, {})
    const quick = await fetch(`${example.url}/api/slow?ms=20`)
    expect(quick.status).toBe(200)
    expect(await quick.json()).toEqual({ waitedMs: 20 })

    const started = performance.now()
    const slow = await fetch(`${example.url}/api/slow?ms=2000`)
    const elapsed = performance.now() - started
    expect(slow.status).toBe(503)
    expect(slow.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(await slow.json()).toMatchObject({ status: 503, code: 'BW_TIMEOUT' })
    expect(elapsed).toBeGreaterThanOrEqual(195)
    expect(elapsed).toBeLessThan(1_000) // cut off at the deadline, not after the 2 s the handler asked for

    const stats = await (await fetch(`${example.url}/debug/stats`)).json()
    expect(stats).toMatchObject({ slowStarted: 2, slowAborted: 1, slowCompleted: 1 })
  })
})
