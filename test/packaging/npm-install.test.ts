// The packed tarballs as a user installs them with npm (not pnpm), in a fresh project outside the workspace, next
// to ioredis 5 and next to ioredis 6: `npm ls` finds every peer valid, and every package loads from ESM, CommonJS
// and TypeScript — including a RedisRateLimitStore on the installed ioredis's own client type.

import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const packagesDir = fileURLToPath(new URL('../../packages/', import.meta.url))
const PACKAGES = ['core', 'redis', 'express', 'fastify', 'koa']
const work = mkdtempSync(join(tmpdir(), 'bw-npm-'))
const tarballs: string[] = []

/** pnpm as it runs this suite (`pnpm test` sets npm_execpath), else pnpm 10 through npx: only Node.js and npm needed. */
function pnpm(args: string[]): [string, string[]] {
  const execPath = process.env.npm_execpath
  return execPath !== undefined && /pnpm/.test(execPath) && /\.c?js$/.test(execPath)
    ? [process.execPath, [execPath, ...args]]
    : ['npx', ['-y', 'pnpm@10', ...args]]
}

beforeAll(async () => {
  const out = join(work, 'tarballs')
  for (const name of PACKAGES) {
    const [command, args] = pnpm(['pack', '--pack-destination', out])
    await run(command, args, { cwd: `${packagesDir}${name}` })
  }
  tarballs.push(...readdirSync(out).map((file) => join(out, file)))
}, 120_000)

afterAll(() => {
  rmSync(work, { recursive: true, force: true })
})

const ESM = `
import * as core from '@breakwater/core'
import * as redis from '@breakwater/redis'
import * as express from '@breakwater/express'
import * as fastify from '@breakwater/fastify'
import * as koa from '@breakwater/koa'
console.log(JSON.stringify([typeof core.createRateLimiter, typeof redis.RedisRateLimitStore, typeof express.rateLimit, typeof fastify.rateLimit, typeof koa.rateLimit]))`
const CJS = ESM.replace(/import \* as (\w+) from ('[^']+')/g, 'const $1 = require($2)')
const TS = `
import { Redis } from 'ioredis'
import { createRateLimiter } from '@breakwater/core'
import { RedisRateLimitStore, redisCheck } from '@breakwater/redis'
import { rateLimit, timeout } from '@breakwater/express'
import type { Request } from 'express'

const client = new Redis({ lazyConnect: true })
export const store = new RedisRateLimitStore({ client })
export const check = redisCheck(client)
export const limiter = createRateLimiter({ limit: 1, windowMs: '1s', store })
export const middleware = [rateLimit({ limit: 1, windowMs: '1s' }), timeout({ timeoutMs: '1s' })]
export const signal = (req: Request): AbortSignal => req.breakwater.signal
`

describe.each(['5', '6'])('npm install of the tarballs with ioredis %s', (major) => {
  const dir = join(work, `ioredis${major}`)

  beforeAll(async () => {
    rmSync(dir, { recursive: true, force: true })
    await run('mkdir', ['-p', dir])
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `bw-consumer-${major}`, private: true }))
    await run(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
        ...tarballs,
        `ioredis@^${major}`,
        'express@5',
        'fastify@5',
        'koa@3',
        '@types/express@5',
        '@types/koa@3',
        '@types/node@20',
        'typescript@5.9.3',
      ],
      { cwd: dir, timeout: 240_000 },
    )
    writeFileSync(join(dir, 'esm.mjs'), ESM)
    writeFileSync(join(dir, 'cjs.cjs'), CJS)
    writeFileSync(join(dir, 'consumer.mts'), TS)
    writeFileSync(join(dir, 'consumer.cts'), TS)
  }, 300_000)

  it(`finds every peer dependency valid (npm ls), ioredis ${major} included`, async () => {
    const { stdout } = await run('npm', ['ls', '--all', 'ioredis'], { cwd: dir })
    expect(stdout).toMatch(new RegExp(`ioredis@${major}\\.`))
    expect(stdout).not.toMatch(/invalid|UNMET/)
  })

  it('installs an MIT LICENSE file with every package', () => {
    for (const name of PACKAGES) {
      expect(readFileSync(join(dir, `node_modules/@breakwater/${name}/LICENSE`), 'utf8')).toMatch(/^MIT License/)
    }
  })

  it('loads every package from ESM and from CommonJS', async () => {
    const expected = JSON.stringify(['function', 'function', 'function', 'function', 'function'])
    expect((await run(process.execPath, ['esm.mjs'], { cwd: dir })).stdout.trim()).toBe(expected)
    expect((await run(process.execPath, ['cjs.cjs'], { cwd: dir })).stdout.trim()).toBe(expected)
  })

  it('type-checks from ESM and CommonJS TypeScript in one program (strict, node16)', async () => {
    const result = await run(
      process.execPath,
      [
        'node_modules/typescript/bin/tsc',
        '--noEmit',
        '--strict',
        '--module',
        'node16',
        '--moduleResolution',
        'node16',
        '--target',
        'es2022',
        '--types',
        'node',
        // ioredis 6's own declarations import the untyped redis-errors; ours are checked without skipLibCheck by
        // packaging.test.ts, so here, as in most apps, libraries' .d.ts files are not.
        '--skipLibCheck',
        'consumer.mts',
        'consumer.cts',
      ],
      { cwd: dir },
    ).catch((error: { stdout: string }) => error)
    expect(result.stdout).toBe('')
  }, 60_000)
})
