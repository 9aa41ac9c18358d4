import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createLoadShedder,
  ErrorCode,
  isInvalidOptionError,
  type LoadShedder,
  type LoadSheddingDecisionEvent,
  type Permit,
  PROBLEM_CONTENT_TYPE,
  ProblemType,
  type RejectDecision,
  type RequestView,
} from '../src/index.js'
import { manualClock, until, view } from './helpers.js'

const isPermit = (value: unknown): value is Permit => typeof (value as Permit).release === 'function'
const at = (path: string, headers: Record<string, string> = {}): RequestView => ({
  ...view('192.0.2.1', headers),
  path,
})

const shedders: LoadShedder[] = []
afterEach(() => {
  for (const shedder of shedders.splice(0)) shedder.close()
})
const make = (options: Parameters<typeof createLoadShedder>[0]): LoadShedder => {
  const shedder = createLoadShedder(options)
  shedders.push(shedder)
  return shedder
}

function record(): { events: LoadSheddingDecisionEvent[]; stop: () => void } {
  const events: LoadSheddingDecisionEvent[] = []
  const listener = (message: unknown) => events.push(message as LoadSheddingDecisionEvent)
  diagnostics.subscribe('breakwater:load-shedding:decision', listener)
  return { events, stop: () => diagnostics.unsubscribe('breakwater:load-shedding:decision', listener) }
}

describe('concurrency limit', () => {
  it('admits up to the limit, then sheds with 503 problem+json (temporary-reduced-capacity, BW_OVERLOADED)', () => {
    const shedder = make({ limit: 2, retryAfterSeconds: 3 })
    expect(isPermit(shedder.acquire())).toBe(true)
    expect(isPermit(shedder.acquire())).toBe(true)
    const shed = shedder.acquire() as RejectDecision
    expect(shed.action).toBe('reject')
    expect(shed.status).toBe(503)
    expect(shed.headers).toEqual([
      ['Content-Type', PROBLEM_CONTENT_TYPE],
      ['Retry-After', '3'],
    ])
    expect(shed.body).toEqual({
      type: ProblemType.TemporaryReducedCapacity,
      title: 'Service Unavailable',
      status: 503,
      detail: 'The server is overloaded; retry later.',
      code: ErrorCode.Overloaded,
    })
    expect(shedder.inflight).toBe(2)
  })

  it('jitters Retry-After uniformly over its range so shed clients do not return in step', () => {
    let n = 0
    const sequence = [0, 0.3, 0.6, 0.99]
    const shedder = make({ limit: 1, retryAfterSeconds: [2, 5], random: () => sequence[n++ % 4] as number })
    shedder.acquire()
    const values = sequence.map(() => (shedder.acquire() as RejectDecision).headers[1]?.[1])
    expect(values).toEqual(['2', '3', '4', '5'])
  })

  it('releases a permit exactly once, however many times release is called', () => {
    const shedder = make({ limit: 2 })
    const first = shedder.acquire() as Permit
    const second = shedder.acquire() as Permit
    first.release()
    first.release()
    first.release('dropped')
    expect(shedder.inflight).toBe(1)
    second.release()
    expect(shedder.inflight).toBe(0)
  })

  it('excluded requests (paths, patterns, predicates) pass without taking a permit', () => {
    const shedder = make({ limit: 1, exclude: ['/readyz', /^\/internal\//, (r) => r.header('x-probe') === '1'] })
    shedder.acquire()
    const res = { on: () => {}, closed: false } as never
    expect(shedder.admit(res, at('/readyz'))).toEqual({ action: 'continue', headers: undefined })
    expect(shedder.admit(res, at('/internal/metrics'))).toMatchObject({ action: 'continue' })
    expect(shedder.admit(res, at('/x', { 'x-probe': '1' }))).toMatchObject({ action: 'continue' })
    expect(shedder.inflight).toBe(1)
  })

  it('overloadState reports the limit, inflight, and "concurrency" after recent shedding', () => {
    const clock = manualClock()
    const shedder = make({ limit: 1, clock: clock.now })
    expect(shedder.overloadState()).toEqual({ overloaded: false, reasons: [], limit: 1, inflight: 0 })
    shedder.acquire()
    shedder.acquire()
    expect(shedder.overloadState()).toEqual({ overloaded: true, reasons: ['concurrency'], limit: 1, inflight: 1 })
    clock.advance(1_500)
    expect(shedder.overloadState().overloaded).toBe(false)
  })
})

describe('wantsRequest', () => {
  it('is true only with an exclude or priority option, or a decision subscriber: adapters skip the view otherwise', () => {
    expect(make({}).wantsRequest).toBe(false)
    expect(make({ exclude: '/livez' }).wantsRequest).toBe(true)
    expect(make({ priority: () => 'critical' }).wantsRequest).toBe(true)
    const plain = make({ limit: 1 })
    const recording = record()
    try {
      expect(plain.wantsRequest).toBe(true)
    } finally {
      recording.stop()
    }
    expect(plain.wantsRequest).toBe(false)
  })
})

describe('priorities', () => {
  it('sheddable requests only get their share of the limit; normal and critical get all of it', () => {
    const shedder = make({ limit: 4, sheddableShare: 0.5 })
    expect(isPermit(shedder.acquire({ priority: 'sheddable' }))).toBe(true)
    expect(isPermit(shedder.acquire({ priority: 'sheddable' }))).toBe(true)
    expect(isPermit(shedder.acquire({ priority: 'sheddable' }))).toBe(false)
    expect(isPermit(shedder.acquire({ priority: 'normal' }))).toBe(true)
    expect(isPermit(shedder.acquire({ priority: 'critical' }))).toBe(true)
    expect(isPermit(shedder.acquire({ priority: 'critical' }))).toBe(false)
  })

  it('the classifier reads the request; what it returns decides the share', () => {
    const shedder = make({
      limit: 2,
      sheddableShare: 0.5,
      priority: (r) => (r.path === '/recommendations' ? 'sheddable' : undefined),
    })
    expect(isPermit(shedder.acquire({ request: at('/recommendations') }))).toBe(true)
    expect(isPermit(shedder.acquire({ request: at('/recommendations') }))).toBe(false)
    expect(isPermit(shedder.acquire({ request: at('/checkout') }))).toBe(true)
  })

  it('the queue admits critical before normal before sheddable, FIFO within a class', async () => {
    const shedder = make({ limit: 1, queue: { size: 10, intervalMs: 5_000 } })
    const holder = shedder.acquire() as Permit
    const order: string[] = []
    const wait = (name: string, priority: 'critical' | 'normal' | 'sheddable') =>
      Promise.resolve(shedder.acquire({ priority })).then((permit) => {
        order.push(name)
        ;(permit as Permit).release()
      })
    const all = [
      wait('sheddable-1', 'sheddable'),
      wait('normal-1', 'normal'),
      wait('critical-1', 'critical'),
      wait('normal-2', 'normal'),
    ]
    expect(shedder.queued).toBe(4)
    holder.release()
    await Promise.all(all)
    expect(order).toEqual(['critical-1', 'normal-1', 'normal-2', 'sheddable-1'])
    expect(shedder.inflight).toBe(0)
  })

  it('a full queue makes room for a higher priority by shedding its newest lower-priority waiter', async () => {
    const { events, stop } = record()
    try {
      const shedder = make({ limit: 1, queue: { size: 2, intervalMs: 5_000 } })
      shedder.acquire()
      const first = shedder.acquire({ priority: 'sheddable' })
      const second = shedder.acquire({ priority: 'sheddable' })
      expect((shedder.acquire({ priority: 'sheddable' }) as RejectDecision).status).toBe(503) // full, same class
      const critical = shedder.acquire({ priority: 'critical' })
      expect(await second).toMatchObject({ status: 503 })
      expect(shedder.queued).toBe(2)
      expect(events.filter((e) => e.outcome === 'shed').map((e) => [e.reason, e.priority])).toEqual([
        ['queue-full', 'sheddable'],
        ['evicted', 'sheddable'],
      ])
      void first
      void critical
    } finally {
      stop()
    }
  })
})

describe('queue', () => {
  it('a waiter gets the next free permit; one waiting longer than intervalMs is shed (queue-timeout)', async () => {
    const { events, stop } = record()
    try {
      const shedder = make({ limit: 1, queue: { size: 5, intervalMs: 40 } })
      const holder = shedder.acquire() as Permit
      const quick = shedder.acquire()
      holder.release()
      const admitted = (await quick) as Permit
      expect(isPermit(admitted)).toBe(true)
      const started = performance.now()
      const late = await shedder.acquire()
      expect(performance.now() - started).toBeGreaterThanOrEqual(35)
      expect(late).toMatchObject({ action: 'reject', status: 503 })
      expect(shedder.queued).toBe(0)
      admitted.release()
      expect(shedder.inflight).toBe(0)
      expect(events.map((e) => `${e.outcome}${e.reason ? `:${e.reason}` : ''}`)).toEqual([
        'admitted',
        'queued',
        'admitted',
        'queued',
        'shed:queue-timeout',
      ])
    } finally {
      stop()
    }
  })

  it('once a queue has stood for intervalMs, waits are cut to targetMs and the newest waiter goes first (LIFO)', async () => {
    const clock = manualClock()
    const shedder = make({ limit: 1, queue: { size: 10, targetMs: 50, intervalMs: 100 }, clock: clock.now })
    const holder = shedder.acquire() as Permit
    const first = shedder.acquire() // t = 0
    clock.advance(60)
    const second = shedder.acquire() // t = 60: not standing yet, so `first` may still wait up to 100 ms
    expect(shedder.queued).toBe(2)
    clock.advance(41)
    const third = shedder.acquire() // t = 101: non-empty for > 100 ms: standing, waits cut to 50 ms
    const fourth = shedder.acquire()
    expect(await first).toMatchObject({ status: 503 }) // waited 101 ms > targetMs
    expect(shedder.overloadState().reasons).toContain('queue')
    const order: string[] = []
    for (const [name, waiter] of [
      ['second', second],
      ['third', third],
      ['fourth', fourth],
    ] as const) {
      void Promise.resolve(waiter).then((permit) => isPermit(permit) && order.push(name))
    }
    holder.release()
    await sleep(0)
    expect(order).toEqual(['fourth']) // the newest, not the oldest
  })

  it('a waiter whose caller gives up (signal) leaves the queue without taking a permit', async () => {
    const shedder = make({ limit: 1, queue: { size: 5, intervalMs: 5_000 } })
    const holder = shedder.acquire() as Permit
    const controller = new AbortController()
    const waiting = shedder.acquire({ signal: controller.signal })
    expect(shedder.queued).toBe(1)
    controller.abort()
    expect(await waiting).toMatchObject({ status: 503 })
    expect(shedder.queued).toBe(0)
    holder.release()
    expect(shedder.inflight).toBe(0)
  })
})

describe('pressure signals', () => {
  it('a blocked event loop sheds normal and sheddable work but not critical, and readiness sees why', async () => {
    const shedder = make({ limit: 100, pressure: { maxEventLoopDelayMs: 30, sampleIntervalMs: 60_000 } })
    await sleep(20)
    const until = performance.now() + 250
    while (performance.now() < until) {
      // busy: the event loop cannot run the delay histogram's timer
    }
    await sleep(15)
    shedder.samplePressure()
    expect(shedder.pressure.eventLoopDelayMs).toBeGreaterThan(30)
    expect(shedder.overloadState()).toMatchObject({ overloaded: true, reasons: ['event-loop-delay'] })
    expect(shedder.acquire({ priority: 'normal' })).toMatchObject({ status: 503 })
    expect(shedder.acquire({ priority: 'sheddable' })).toMatchObject({ status: 503 })
    expect(isPermit(shedder.acquire({ priority: 'critical' }))).toBe(true)
    await sleep(50)
    shedder.samplePressure() // a calm interval: per interval, not cumulative
    expect(shedder.overloadState().overloaded).toBe(false)
    expect(isPermit(shedder.acquire({ priority: 'normal' }))).toBe(true)
  })

  it('with a ramp, the shedding probability grows with the excess (sheddable at twice the rate)', () => {
    let draw = 0
    const shedder = make({
      limit: 100,
      pressure: { maxHeapUsedBytes: 1, ramp: 1e12, sampleIntervalMs: 60_000 },
      random: () => draw,
    })
    shedder.samplePressure()
    const level = ((shedder.pressure.heapUsedBytes as number) - 1) / 1e12 // tiny but > 0
    expect(level).toBeGreaterThan(0)
    draw = level * 1.5 // above normal's probability, below sheddable's
    expect(isPermit(shedder.acquire({ priority: 'normal' }))).toBe(true)
    expect(shedder.acquire({ priority: 'sheddable' })).toMatchObject({ status: 503 })
    draw = level * 0.5
    expect(shedder.acquire({ priority: 'normal' })).toMatchObject({ status: 503 })
  })
})

describe('options', () => {
  it.each([
    [{ id: '' }, /"id"/],
    [{ sheddableShare: 0 }, /"sheddableShare"/],
    [{ queue: { size: 0 } }, /"queue.size"/],
    [{ queue: { targetMs: -1 } }, /"queue.targetMs"/],
    [{ retryAfterSeconds: [5, 1] }, /"retryAfterSeconds"/],
    [{ retryAfterSeconds: 1.5 }, /"retryAfterSeconds"/],
    [{ priority: 'critical' }, /"priority"/],
    [{ exclude: [42] }, /"exclude"/],
    [{ pressure: { maxEventLoopUtilization: 2 } }, /"pressure.maxEventLoopUtilization"/],
    [{ pressure: { ramp: -1 } }, /"pressure.ramp"/],
  ])('rejects %o at construction', (options, message) => {
    let thrown: unknown
    try {
      createLoadShedder(options as never)
    } catch (error) {
      thrown = error
    }
    expect(isInvalidOptionError(thrown)).toBe(true)
    expect((thrown as Error).message).toMatch(message)
  })

  it('defaults: adaptive Gradient2 starting at 20, no queue, Retry-After 1–5 s', () => {
    const shedder = make({})
    expect(shedder.algorithm).toBe('gradient2')
    expect(shedder.limit).toBe(20)
    for (let i = 0; i < 20; i++) shedder.acquire()
    const shed = shedder.acquire() as RejectDecision
    expect(Number(shed.headers[1]?.[1])).toBeGreaterThanOrEqual(1)
    expect(Number(shed.headers[1]?.[1])).toBeLessThanOrEqual(5)
    expect(shedder.queued).toBe(0)
  })
})

describe('permits whose adapter reports the handler returning (settledByHandler, handedOn)', () => {
  it('releases at once when the response has ended, else when it closes; a client leaving still releases', async () => {
    const shedder = make({ limit: 5 })
    const seen: Array<{ path: string; inflight: number; listeners: number }> = []
    const server = http.createServer((req, res) => {
      const decision = shedder.admit(res, undefined, undefined, res, true)
      expect(decision).toMatchObject({ action: 'continue' })
      // What the adapter's next() would do: answer now, or keep writing (or waiting) after it returns.
      if (req.url === '/now') res.end('done')
      else res.write('started')
      shedder.handedOn(res)
      seen.push({ path: req.url ?? '', inflight: shedder.inflight, listeners: res.listenerCount('close') })
      if (req.url === '/later') setTimeout(() => res.end(), 30)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const get = (path: string): Promise<string> =>
      new Promise((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
          res.resume()
          res.on('end', () => resolve('complete'))
          res.on('error', () => resolve('cut'))
        })
        req.on('error', () => resolve('cut'))
        if (path === '/gone') setTimeout(() => req.destroy(), 30)
      })
    try {
      expect(await get('/now')).toBe('complete')
      expect(seen[0]).toEqual({ path: '/now', inflight: 0, listeners: 0 }) // released before next() returned
      expect(await get('/later')).toBe('complete')
      expect(seen[1]).toMatchObject({ path: '/later', inflight: 1, listeners: 1 }) // held while being written
      await until(() => shedder.inflight === 0)
      expect(await get('/gone')).toBe('cut')
      await until(() => shedder.inflight === 0) // the client left mid-response: released, exactly once
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
