// Health probes without HTTP: probe semantics, check timeouts, caching, one shared run for concurrent probes,
// overload, public versus detailed bodies, option checks.

import diagnostics from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import {
  createHealth,
  eventLoopDelayCheck,
  type HealthCheck,
  type HealthCheckEvent,
  heapCheck,
  isBreakwaterError,
  isInvalidOptionError,
} from '../src/index.js'
import { view } from './helpers.js'

const passing = (name: string): HealthCheck => ({ name, check: async () => {} })
const failing = (name: string, critical = true): HealthCheck => ({
  name,
  critical,
  check: async () => {
    throw new Error(`${name} is down`)
  },
})

describe('probes', () => {
  it('before markStarted: startup and readiness fail (503), liveness passes; after: all pass', async () => {
    const health = createHealth({ checks: [passing('db')] })
    expect((await health.answer('startup')).statusCode).toBe(503)
    const ready = await health.answer('ready')
    expect(ready.statusCode).toBe(503)
    expect(ready.body).toMatchObject({ status: 'fail', output: 'starting' })
    expect((await health.answer('live')).statusCode).toBe(200)

    health.markStarted()
    expect(health.started).toBe(true)
    for (const kind of ['live', 'ready', 'startup'] as const) {
      const answer = await health.answer(kind)
      expect(answer.statusCode).toBe(200)
      expect(answer.body.status).toBe('pass')
    }
  })

  it('a failing critical check fails readiness while liveness stays 200 and never runs it', async () => {
    let runs = 0
    const db: HealthCheck = {
      name: 'db',
      check: async () => {
        runs++
        throw new Error('connection refused')
      },
    }
    const health = createHealth({ checks: [db, passing('cache')], started: true })
    const ready = await health.answer('ready')
    expect(ready.statusCode).toBe(503)
    expect(ready.body.status).toBe('fail')
    expect(ready.body.checks?.['db:responseTime']?.[0]).toMatchObject({
      status: 'fail',
      output: 'connection refused',
      critical: true,
      observedUnit: 'ms',
    })
    expect(ready.body.checks?.['cache:responseTime']?.[0]?.status).toBe('pass')
    expect(ready.body.output).toBe('not passing: db:responseTime')
    expect(runs).toBe(1)
    const live = await health.answer('live')
    expect(live.statusCode).toBe(200)
    expect(runs).toBe(1)
  })

  it('a failing non-critical check warns with 200; a check may report its own measurement', async () => {
    const queue: HealthCheck = {
      name: 'queue',
      measurement: 'depth',
      check: () => ({ status: 'warn', observedValue: 9_000, observedUnit: 'messages', output: 'backlog' }),
    }
    const health = createHealth({ checks: [failing('search', false), queue], started: true })
    const ready = await health.answer('ready')
    expect(ready.statusCode).toBe(200)
    expect(ready.body.status).toBe('warn')
    expect(ready.body.checks?.['search:responseTime']?.[0]).toMatchObject({ status: 'warn', critical: false })
    expect(ready.body.checks?.['queue:depth']?.[0]).toMatchObject({
      status: 'warn',
      observedValue: 9_000,
      observedUnit: 'messages',
      output: 'backlog',
    })
  })

  it('a slow check is cut at its timeout, its signal aborted with BW_HEALTH_CHECK_TIMEOUT', async () => {
    let reason: unknown
    const slow: HealthCheck = {
      name: 'slow',
      timeoutMs: 80,
      check: (signal) =>
        new Promise((resolve) => {
          signal.addEventListener('abort', () => {
            reason = signal.reason
          })
          setTimeout(resolve, 5_000).unref()
        }),
    }
    const events: HealthCheckEvent[] = []
    const listener = (message: unknown) => events.push(message as HealthCheckEvent)
    diagnostics.subscribe('breakwater:health:check', listener)
    try {
      const health = createHealth({ checks: [slow], started: true })
      const started = performance.now()
      const ready = await health.answer('ready')
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(75)
      expect(elapsed).toBeLessThan(80 + 250)
      expect(ready.statusCode).toBe(503)
      expect(ready.body.checks?.['slow:responseTime']?.[0]?.output).toBe(
        'Health check "slow:responseTime" timed out after 80 ms',
      )
    } finally {
      diagnostics.unsubscribe('breakwater:health:check', listener)
    }
    expect(isBreakwaterError(reason) && reason.code).toBe('BW_HEALTH_CHECK_TIMEOUT')
    expect(events.map((e) => [e.check, e.outcome, e.critical])).toEqual([['slow:responseTime', 'timed_out', true]])
  })

  it('50 concurrent probes run a check once, and the result is reused for cacheMs', async () => {
    let runs = 0
    const counted: HealthCheck = {
      name: 'db',
      check: async () => {
        runs++
        await sleep(30)
      },
    }
    const health = createHealth({ checks: [counted], started: true, cacheMs: 150 })
    const answers = await Promise.all(Array.from({ length: 50 }, () => health.answer('ready')))
    expect(answers.every((a) => a.statusCode === 200)).toBe(true)
    expect(runs).toBe(1)
    await health.answer('ready')
    expect(runs).toBe(1) // cached
    await sleep(170)
    await health.answer('ready')
    expect(runs).toBe(2) // stale: run again
  })

  it('refreshIntervalMs runs checks in the background; probes answer from the last run', async () => {
    let runs = 0
    let healthy = true
    const flaky: HealthCheck = {
      name: 'db',
      check: async () => {
        runs++
        if (!healthy) throw new Error('down')
      },
    }
    const health = createHealth({ checks: [flaky], started: true, refreshIntervalMs: 50 })
    try {
      expect((await health.answer('ready')).statusCode).toBe(200)
      const before = runs
      await Promise.all(Array.from({ length: 10 }, () => health.answer('ready')))
      expect(runs).toBe(before) // probes never ran it themselves
      healthy = false
      await sleep(120)
      expect(runs).toBeGreaterThan(before)
      expect((await health.answer('ready')).statusCode).toBe(503)
    } finally {
      health.close()
    }
  })

  it('overload from any overloadState() source fails readiness (or warns with overloadStatus: warn)', async () => {
    let overloaded = false
    const shedder = {
      overloadState: () => ({ overloaded, reasons: overloaded ? ['concurrency'] : [], limit: 8, inflight: 9 }),
    }
    const health = createHealth({ overload: shedder, started: true })
    expect((await health.answer('ready')).statusCode).toBe(200)
    overloaded = true
    const ready = await health.answer('ready')
    expect(ready.statusCode).toBe(503)
    expect(ready.body.checks?.['overload:inflight']?.[0]).toMatchObject({
      status: 'fail',
      observedValue: 9,
      observedUnit: 'requests',
      output: 'concurrency; limit 8',
    })
    const lenient = createHealth({ overload: shedder, overloadStatus: 'warn', started: true })
    const warned = await lenient.answer('ready')
    expect([warned.statusCode, warned.body.status]).toEqual([200, 'warn'])
  })

  it('a public probe carries only its status; details need authorize(request) to return true', async () => {
    const health = createHealth({
      checks: [failing('db')],
      started: true,
      info: { version: '1.2.3' },
      authorize: (request) => request.header('authorization') === 'Bearer ops',
    })
    const anonymous = await health.answer('ready', view())
    expect(anonymous.statusCode).toBe(503)
    expect(anonymous.payload).toBe('{"status":"fail"}')
    expect(anonymous.headers).toEqual([
      ['Content-Type', 'application/health+json'],
      ['Cache-Control', 'no-store'],
    ])
    const ops = await health.answer('ready', view('192.0.2.1', { authorization: 'Bearer ops' }))
    expect(JSON.parse(ops.payload)).toMatchObject({
      status: 'fail',
      version: '1.2.3',
      checks: { 'db:responseTime': [{}] },
    })

    const noAuthorize = createHealth({ checks: [failing('db')], started: true })
    expect((await noAuthorize.answer('ready', view())).payload).toBe('{"status":"fail"}')
    const throwing = createHealth({
      started: true,
      authorize: () => {
        throw new Error('bug')
      },
    })
    const answer = await throwing.answer('live', view())
    expect([answer.statusCode, answer.payload]).toEqual([200, '{"status":"pass"}'])
  })

  it('built-in checks report event-loop delay and heap use, non-critical by default', async () => {
    const health = createHealth({ checks: [eventLoopDelayCheck(), heapCheck()], started: true })
    const body = await health.report('ready')
    expect(body.checks?.['eventloop:delay']?.[0]).toMatchObject({ observedUnit: 'ms', critical: false })
    expect(body.checks?.['heap:utilization']?.[0]).toMatchObject({ observedUnit: 'percent', critical: false })
    const heap = body.checks?.['heap:utilization']?.[0]?.observedValue as number
    expect(heap).toBeGreaterThan(0)
    expect(heap).toBeLessThan(100)
    // A tiny threshold makes the heap check warn (not fail: it is not critical).
    const strict = createHealth({ checks: [heapCheck({ warnRatio: 0.0001, failRatio: 0.0002 })], started: true })
    expect((await strict.answer('ready')).body.status).toBe('warn')
  })
})

describe('options', () => {
  const optionOf = (fn: () => unknown): string => {
    try {
      fn()
    } catch (error) {
      if (isInvalidOptionError(error)) return error.option
      throw error
    }
    throw new Error('expected an InvalidOptionError')
  }

  it('names the bad option', () => {
    expect(optionOf(() => createHealth({ checks: [{ name: 'a b', check: () => {} }] }))).toBe('checks[0].name')
    expect(optionOf(() => createHealth({ checks: [{ name: 'a', check: 'x' as never }] }))).toBe('checks[0].check')
    expect(optionOf(() => createHealth({ checks: [{ name: 'a', check: () => {}, timeoutMs: -1 }] }))).toBe(
      'checks[0].timeoutMs',
    )
    expect(optionOf(() => createHealth({ checks: [passing('a'), passing('a')] }))).toBe('checks')
    expect(optionOf(() => createHealth({ paths: { ready: 'readyz' } }))).toBe('paths.ready')
    expect(optionOf(() => createHealth({ paths: { ready: '/livez' } }))).toBe('paths.ready')
    expect(optionOf(() => createHealth({ overload: {} as never }))).toBe('overload')
    expect(optionOf(() => createHealth({ cacheMs: 'soon' }))).toBe('cacheMs')
  })

  it('resolves paths, and false leaves a probe out', () => {
    expect(createHealth().routes).toEqual([
      { kind: 'live', path: '/livez' },
      { kind: 'ready', path: '/readyz' },
      { kind: 'startup', path: '/startupz' },
    ])
    expect(createHealth({ paths: { live: '/healthz', startup: false } }).routes).toEqual([
      { kind: 'live', path: '/healthz' },
      { kind: 'ready', path: '/readyz' },
    ])
  })
})
