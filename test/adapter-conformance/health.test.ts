// The health adapter contract, proved once for Express, Fastify and Koa over real sockets: GET and HEAD on each
// probe, the application/health+json format, startup gating, critical versus non-critical checks, check
// timeouts, one shared run for concurrent probes, details only for authorized callers, and probes that
// Breakwater's own rate limit and timeout never touch.

import { setTimeout as sleep } from 'node:timers/promises'
import type { HealthCheck, HealthOptions } from '@breakwater/core'
import { afterEach, describe, expect, it } from 'vitest'
import { FRAMEWORKS } from './apps.js'
import { GUARD_LIMIT, GUARD_TIMEOUT_MS, type HealthApp, startHealthApp } from './health-apps.js'
import { rawRequest } from './support.js'

const PROBES = ['/livez', '/readyz', '/startupz'] as const

describe.each(FRAMEWORKS)('%s health adapter', (framework) => {
  const apps: HealthApp[] = []
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()))
  })
  const start = async (options: HealthOptions = {}): Promise<HealthApp> => {
    const app = await startHealthApp(framework, options)
    apps.push(app)
    return app
  }

  it('answers GET and HEAD on each probe with application/health+json, no-store, and only a status', async () => {
    const app = await start({ started: true })
    for (const path of PROBES) {
      const get = await rawRequest(`${app.url}${path}`)
      expect(get.status).toBe(200)
      expect(get.headers['content-type']).toMatch(/^application\/health\+json/)
      expect(get.headers['cache-control']).toBe('no-store')
      expect(JSON.parse(get.body)).toEqual({ status: 'pass' })
      const head = await rawRequest(`${app.url}${path}`, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(head.headers['content-type']).toMatch(/^application\/health\+json/)
      expect(head.headers['cache-control']).toBe('no-store')
      expect(head.body).toBe('')
    }
  })

  it('until startup is marked complete: startupz and readyz 503 fail, livez 200; then all pass', async () => {
    const app = await start()
    const statuses = async () => Promise.all(PROBES.map(async (path) => (await rawRequest(`${app.url}${path}`)).status))
    expect(await statuses()).toEqual([200, 503, 503])
    const ready = await rawRequest(`${app.url}/readyz`)
    expect(JSON.parse(ready.body)).toEqual({ status: 'fail' })
    app.health.markStarted()
    expect(await statuses()).toEqual([200, 200, 200])
  })

  it('a failing critical check gives 503 on readyz while livez stays 200; details only when authorized', async () => {
    let dbRuns = 0
    const db: HealthCheck = {
      name: 'db',
      check: async () => {
        dbRuns++
        throw new Error('ECONNREFUSED 10.0.0.7:5432')
      },
    }
    const app = await start({
      started: true,
      checks: [db, { name: 'search', critical: false, check: async () => {} }],
      info: { version: '2.0.1' },
      authorize: (request) => request.header('authorization') === 'Bearer ops-token',
    })
    const ready = await rawRequest(`${app.url}/readyz`)
    expect(ready.status).toBe(503)
    expect(ready.body).toBe('{"status":"fail"}') // nothing internal leaks to the public
    expect((await rawRequest(`${app.url}/livez`)).status).toBe(200)

    const detailed = await rawRequest(`${app.url}/readyz`, { headers: { authorization: 'Bearer ops-token' } })
    expect(detailed.status).toBe(503)
    const body = JSON.parse(detailed.body)
    expect(body).toMatchObject({ status: 'fail', version: '2.0.1', output: 'not passing: db:responseTime' })
    expect(body.checks['db:responseTime'][0]).toMatchObject({
      status: 'fail',
      output: 'ECONNREFUSED 10.0.0.7:5432',
      observedUnit: 'ms',
    })
    expect(Date.parse(body.checks['db:responseTime'][0].time)).not.toBeNaN()
    expect(body.checks['search:responseTime'][0].status).toBe('pass')
    expect(body.checks['lifecycle:state'][0]).toMatchObject({ status: 'pass', observedValue: 'serving' })
    expect(dbRuns).toBe(1) // the second probe reused the cached result; livez never ran it
  })

  it('a slow check is cut at its timeout: readyz answers 503 then, not when the check would finish', async () => {
    const slow: HealthCheck = {
      name: 'slow',
      timeoutMs: 100,
      check: (signal) => sleep(5_000, undefined, { signal }),
    }
    const app = await start({ started: true, checks: [slow], authorize: () => true })
    const started = performance.now()
    const ready = await rawRequest(`${app.url}/readyz`)
    const elapsed = performance.now() - started
    expect(ready.status).toBe(503)
    expect(JSON.parse(ready.body).checks['slow:responseTime'][0].output).toBe(
      'Health check "slow:responseTime" timed out after 100 ms',
    )
    expect(elapsed).toBeGreaterThanOrEqual(95)
    expect(elapsed).toBeLessThan(100 + 400) // scheduling slack on 2 shared cores
  })

  it('50 concurrent probes run a check once', async () => {
    let runs = 0
    const counted: HealthCheck = {
      name: 'db',
      check: async () => {
        runs++
        await sleep(50)
      },
    }
    const app = await start({ started: true, checks: [counted] })
    const answers = await Promise.all(Array.from({ length: 50 }, () => rawRequest(`${app.url}/readyz`)))
    expect(answers.map((a) => a.status)).toEqual(Array(50).fill(200))
    expect(runs).toBe(1)
  })

  it('probes are never rate-limited, timed out or counted by the app-wide policies', async () => {
    // The check takes longer than the app-wide timeout; more probes than the rate limit allows.
    const slowish: HealthCheck = { name: 'db', timeoutMs: 1_000, cacheMs: 0, check: () => sleep(GUARD_TIMEOUT_MS + 60) }
    const app = await start({ started: true, checks: [slowish] })
    for (let i = 0; i < GUARD_LIMIT * 3; i++) {
      const probe = await rawRequest(`${app.url}${PROBES[i % 3]}`)
      expect(probe.status).toBe(200)
      expect(probe.headers['content-type']).toMatch(/^application\/health\+json/)
      expect(probe.headers.ratelimit).toBeUndefined()
    }
    // The limiter has not counted a single probe: the client's first ordinary request has the full quota.
    const hello = await rawRequest(`${app.url}/api/hello`)
    expect(hello.status).toBe(200)
    expect(hello.headers.ratelimit).toMatch(new RegExp(`^"default";r=${GUARD_LIMIT - 1};t=\\d+$`))
    if (framework === 'fastify') {
      for (const path of PROBES) {
        expect(app.routeConfigs.get(`GET,HEAD ${path}`)).toEqual({
          rateLimit: false,
          timeout: false,
          loadShedding: false,
        })
      }
    }
  })

  it('serves custom paths and leaves out a probe set to false', async () => {
    const app = await start({ started: true, paths: { live: '/health/live', ready: '/health/ready', startup: false } })
    expect((await rawRequest(`${app.url}/health/live`)).status).toBe(200)
    expect((await rawRequest(`${app.url}/health/ready`)).status).toBe(200)
    expect((await rawRequest(`${app.url}/livez`)).status).toBe(404)
    expect((await rawRequest(`${app.url}/startupz`)).status).toBe(404)
  })
})
