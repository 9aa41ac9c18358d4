// The built packages as a user installs them: exports maps pass publint and are-the-types-wrong, and each
// package loads from CommonJS, ESM and TypeScript (node16 resolution, both module kinds).

import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { publint } from 'publint'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const testDir = fileURLToPath(new URL('..', import.meta.url))
const packagesDir = fileURLToPath(new URL('../../packages/', import.meta.url))

/** Each package and a runtime export that proves it loaded. */
const packages = {
  core: 'createRateLimiter',
  redis: 'RedisRateLimitStore',
  express: 'rateLimit',
  fastify: 'rateLimit',
  koa: 'rateLimit',
  otel: 'instrument',
  undici: 'breakwater',
} as const

describe.each(Object.entries(packages))('@breakwater/%s', (name, exported) => {
  const dir = `${packagesDir}${name}`

  it('is built', () => {
    expect(existsSync(`${dir}/dist/index.js`), `run "pnpm build" first (${dir}/dist missing)`).toBe(true)
  })

  it('passes publint (strict)', async () => {
    const { messages } = await publint({ pkgDir: dir, strict: true })
    expect(messages).toEqual([])
  })

  it('passes are-the-types-wrong', async () => {
    // Data files a package exports (otel's alert rules and dashboard) have no types to check.
    const { exports } = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')) as { exports: Record<string, unknown> }
    const dataFiles = Object.keys(exports).filter((subpath) => /\.(ya?ml|json)$/.test(subpath))
    const args = ['--pack', dir, '--format', 'json', '--exclude-entrypoints', ...dataFiles]
    const { stdout } = await run(`${testDir}node_modules/.bin/attw`, args, {
      cwd: testDir,
    }).catch((error: { stdout: string }) => error)
    expect(JSON.parse(stdout).problems).toEqual({})
  })

  it('loads from CommonJS and ESM with the same exports', async () => {
    const script = (load: string) =>
      `${load}.then((m) => console.log(JSON.stringify([typeof m[${JSON.stringify(exported)}], Object.keys(m).sort()])))`
    const cjs = await run(process.execPath, ['-e', script(`Promise.resolve(require('@breakwater/${name}'))`)], {
      cwd: testDir,
    })
    const esm = await run(process.execPath, ['--input-type=module', '-e', script(`import('@breakwater/${name}')`)], {
      cwd: testDir,
    })
    const [cjsType, cjsKeys] = JSON.parse(cjs.stdout)
    const [esmType, esmKeys] = JSON.parse(esm.stdout)
    expect(cjsType).toBe('function')
    expect(esmType).toBe('function')
    expect(esmKeys).toEqual(cjsKeys.filter((k: string) => k !== 'default' && k !== '__esModule'))
  })
})

describe('@breakwater/core/adapter', () => {
  it('loads from CommonJS and ESM with the same exports, sharing one request state with the main entry', async () => {
    // One request context per response whichever entry asks: the entries share their chunk, not a copy of it.
    const check = (core: string, adapter: string) => `
      Promise.all([${core}, ${adapter}]).then(([core, adapter]) => {
        const res = new (require('node:http').ServerResponse)({ method: 'GET', httpVersionMajor: 1, httpVersionMinor: 1 })
        console.log(JSON.stringify([adapter.requestContext(res) instanceof core.RequestContext, typeof core.requestContext, Object.keys(adapter).sort()]))
      })`
    const cjs = await run(
      process.execPath,
      ['-e', check(`require('@breakwater/core')`, `require('@breakwater/core/adapter')`)],
      { cwd: testDir },
    )
    const esm = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);${check(`import('@breakwater/core')`, `import('@breakwater/core/adapter')`)}`,
      ],
      { cwd: testDir },
    )
    const [cjsShared, cjsInMain, cjsKeys] = JSON.parse(cjs.stdout)
    const [esmShared, esmInMain, esmKeys] = JSON.parse(esm.stdout)
    expect([cjsShared, esmShared]).toEqual([true, true])
    // Adapter hooks are not part of the user-facing entry.
    expect([cjsInMain, esmInMain]).toEqual(['undefined', 'undefined'])
    expect(cjsKeys).toContain('handlerSettled')
    expect(esmKeys).toEqual(cjsKeys.filter((k: string) => k !== 'default' && k !== '__esModule'))
  })
})

describe('dual installs', () => {
  it('recognise each other’s errors by brand, not instanceof', async () => {
    const script = `
      const cjs = require('@breakwater/core')
      import('@breakwater/core').then((esm) => {
        let error
        try { cjs.createRateLimiter({ limit: -1, windowMs: 1000 }) } catch (e) { error = e }
        console.log(JSON.stringify([esm.isBreakwaterError(error), esm.isInvalidOptionError(error), error instanceof esm.BreakwaterError, error.code]))
      })`
    const { stdout } = await run(process.execPath, ['-e', script], { cwd: testDir })
    expect(JSON.parse(stdout)).toEqual([true, true, false, 'BW_INVALID_OPTION'])
  })
})

describe('TypeScript consumers', () => {
  it('type-check against the published declarations from ESM and CommonJS files', async () => {
    const tsc = `${testDir}node_modules/.bin/tsc`
    const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
    const result = await run(
      tsc,
      [
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
        '--skipLibCheck',
        'false',
        `${fixtures}consumer.mts`,
        `${fixtures}consumer.cts`,
      ],
      { cwd: testDir },
    ).catch((error: { stdout: string; code: number }) => error)
    expect((result as { stdout: string }).stdout).toBe('')
  }, 60_000)
})
