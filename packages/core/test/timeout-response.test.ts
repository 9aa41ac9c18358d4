// The request lifecycle over real sockets with plain node:http: what every adapter builds on.

import diagnostics from 'node:diagnostics_channel'
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { type ExpiryHandler, guardLateWrites, handlerSettled } from '../src/adapter.js'
import {
  createTimeout,
  type RequestContext,
  type RequestView,
  type Timeout,
  type TimeoutLateWriteEvent,
} from '../src/index.js'
import { deadlineQueueStats } from '../src/timeout/request-context.js'
import { liveCount } from '../src/timeout/shutdown.js'
import { breakwaterTimersDuring, until } from './helpers.js'

type Handler = (req: IncomingMessage, res: ServerResponse, context: RequestContext) => Promise<void> | void

/** How a minimal adapter answers at the deadline: the problem if nothing was sent, else cut the stream. */
const onExpire: ExpiryHandler<ServerResponse> = (decision, res) => {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.writeHead(decision.status, Object.fromEntries(decision.headers))
  res.end(JSON.stringify(decision.body))
  guardLateWrites(res)
}

function viewOf(req: IncomingMessage, context: () => RequestContext): RequestView {
  return {
    method: req.method ?? 'GET',
    path: req.url ?? '/',
    ip: req.socket.remoteAddress,
    header: (name) => {
      const value = req.headers[name]
      return Array.isArray(value) ? value.join(', ') : value
    },
    get signal() {
      return context().signal
    },
  }
}

const servers: Server[] = []
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  }
})

async function serve(timeout: Timeout, handler: Handler): Promise<string> {
  const server = createServer((req, res) => {
    let context: RequestContext | undefined
    const view = viewOf(req, () => context as RequestContext)
    context = timeout.start(res, view, onExpire, res)
    Promise.resolve()
      .then(() => handler(req, res, context))
      .catch((error: unknown) => {
        const decision = timeout.decisionFor(error, context)
        if (res.headersSent || res.destroyed) return
        res.writeHead(decision?.status ?? 500, decision ? Object.fromEntries(decision.headers) : {})
        res.end(decision ? JSON.stringify(decision.body) : 'error')
      })
  })
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** `'ended'` when the response arrives in full, `'cut'` when its connection is destroyed midway. */
function responseOutcome(url: string): Promise<'ended' | 'cut'> {
  return new Promise((resolve) => {
    httpRequest(url, (response) => {
      response.on('data', () => {})
      response.on('end', () => resolve('ended'))
      response.on('error', () => resolve('cut'))
      response.on('aborted', () => resolve('cut'))
    })
      .on('error', () => resolve('cut'))
      .end()
  })
}

/** Resolves when `signal` aborts (rejecting with its reason), as a database driver would. */
function waitOn(signal: AbortSignal, ms: number): Promise<void> {
  return sleep(ms, undefined, { signal })
}

describe('timeout over real sockets (node:http)', () => {
  it('a handler waiting on the signal sees the abort at the deadline and the client gets 503 then', async () => {
    let observed: { elapsed: number; kind: unknown } | undefined
    const url = await serve(createTimeout({ timeoutMs: 100 }), async (req, res, context) => {
      if (req.url === '/warm') return void res.end('ok')
      const started = performance.now()
      try {
        await waitOn(context.signal, 5_000)
        res.end('done')
      } catch (error) {
        // Node's own APIs (timers/promises, events.once, stream.pipeline) wrap the signal's reason as `cause`.
        observed = { elapsed: performance.now() - started, kind: (error as { cause?: { kind?: unknown } }).cause?.kind }
        throw error
      }
    })
    await (await fetch(`${url}/warm`)).text() // connection set up: time only the request
    const started = performance.now()
    const response = await fetch(`${url}/slow`)
    const elapsed = performance.now() - started
    expect(response.status).toBe(503)
    expect(response.headers.get('content-type')).toBe('application/problem+json')
    expect(await response.json()).toMatchObject({ code: 'BW_TIMEOUT', status: 503 })
    expect(elapsed).toBeGreaterThanOrEqual(99)
    expect(elapsed).toBeLessThan(100 + 200) // 2 shared cores, several test files at once: generous slack
    expect(observed?.kind).toBe('timeout')
    expect(observed?.elapsed).toBeGreaterThanOrEqual(99)
    expect(observed?.elapsed).toBeLessThan(100 + 100)
  })

  it('a handler failing with DeadlineExceededError before the deadline is answered 504', async () => {
    const url = await serve(createTimeout({ timeoutMs: 1_000 }), async (_req, _res, context) => {
      await waitOn(context.timeoutSignal(30), 5_000) // an upstream call with a 30 ms budget
    })
    const response = await fetch(url)
    expect(response.status).toBe(504)
    expect(await response.json()).toMatchObject({ code: 'BW_DEADLINE_EXCEEDED', title: 'Gateway Timeout' })
  })

  it('a client that disconnects aborts the signal with kind client-gone', async () => {
    let resolveAbort: (kind: unknown) => void = () => {}
    const aborted = new Promise((resolve) => {
      resolveAbort = resolve
    })
    const url = await serve(createTimeout({ timeoutMs: 5_000 }), async (_req, _res, context) => {
      context.signal.addEventListener('abort', () => resolveAbort(context.abortKind))
      await waitOn(context.signal, 5_000).catch(() => {})
    })
    const controller = new AbortController()
    const pending = fetch(url, { signal: controller.signal }).catch(() => 'client aborted')
    await sleep(50)
    controller.abort()
    expect(await pending).toBe('client aborted')
    expect(await aborted).toBe('client-gone')
  })

  it('a POST whose JSON body has been read is not aborted (unlike request close)', async () => {
    let requestClosed = false
    const url = await serve(createTimeout({ timeoutMs: 5_000 }), async (req, res, context) => {
      req.on('close', () => {
        requestClosed = true
      })
      let body = ''
      for await (const chunk of req) body += chunk
      await waitOn(context.signal, 80)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ received: JSON.parse(body), aborted: context.signal.aborted }))
    })
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'book', quantity: 2 }),
    })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ received: { item: 'book', quantity: 2 }, aborted: false })
    expect(requestClosed).toBe(true) // the body was read: `req 'close'` fired, yet the signal stayed open
  })

  it('a handler that ignores the signal and writes late does no harm, and the late write is reported once', async () => {
    const late: TimeoutLateWriteEvent[] = []
    const listener = (message: unknown) => late.push(message as TimeoutLateWriteEvent)
    diagnostics.subscribe('breakwater:timeout:late-write', listener)
    const errors: unknown[] = []
    const onError = (error: unknown) => errors.push(error)
    process.on('uncaughtException', onError)
    process.on('unhandledRejection', onError)
    let lateDone = false
    try {
      const url = await serve(createTimeout({ timeoutMs: 40 }), async (_req, res) => {
        await sleep(120) // ignores the signal
        res.setHeader('content-type', 'text/plain')
        res.writeHead(200)
        res.write('late')
        await new Promise<void>((resolve) => res.end('!', () => resolve()))
        lateDone = true
      })
      const response = await fetch(url)
      expect(response.status).toBe(503)
      expect(await response.text()).toContain('BW_TIMEOUT')
      await sleep(150)
      expect(lateDone).toBe(true)
      // the connection is still usable: keep-alive was not broken by the late writes
      const again = await fetch(url)
      expect(again.status).toBe(503)
      await again.text()
      await sleep(150)
    } finally {
      diagnostics.unsubscribe('breakwater:timeout:late-write', listener)
      process.off('uncaughtException', onError)
      process.off('unhandledRejection', onError)
    }
    expect(errors).toEqual([])
    expect(late).toHaveLength(2) // once per request, though each wrote four times
    expect(late[0]).toMatchObject({ policy: 'timeout', outcome: 'late_write', operation: 'setHeader' })
    expect(late[0]?.lateSeconds).toBeGreaterThan(0.05)
  })

  it('a response already streaming at the deadline is ended by destroying the connection', async () => {
    const url = await serve(createTimeout({ timeoutMs: 60 }), async (_req, res, context) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial')
      await waitOn(context.signal, 5_000).catch(() => {})
    })
    const started = performance.now()
    const outcome = await responseOutcome(url)
    expect(outcome).toBe('cut')
    expect(performance.now() - started).toBeLessThan(60 + 200)
  })

  it('500 requests leave no timers and no shutdown registrations behind', async () => {
    const url = await serve(createTimeout({ timeoutMs: 30_000 }), (_req, res, context) => {
      void context.signal
      context.timeoutSignal(10_000)
      res.end('ok')
    })
    const timers = await breakwaterTimersDuring(async () => {
      for (let batch = 0; batch < 10; batch++) {
        await Promise.all(Array.from({ length: 50 }, () => fetch(url).then((r) => r.text())))
      }
    })
    // A child timer per request, all cleared; the deadlines share one queue timer (unref'd, may still be pending).
    expect(timers.created - 500).toBeGreaterThanOrEqual(0)
    expect(timers.created - 500).toBeLessThanOrEqual(1)
    expect(timers.live).toBe(timers.created - 500)
    expect(deadlineQueueStats().waiting).toBe(0)
    expect(liveCount()).toBe(0)
  })
})

describe('timeout settled by the handler (no close listener until one is needed)', () => {
  /** A server whose adapter promises `handlerSettled`, as the Fastify and Koa adapters do. */
  async function serveSettled(timeout: Timeout, handler: Handler, expired: string[] = []): Promise<string> {
    const server = createServer((req, res) => {
      const onExpireCounted: ExpiryHandler<ServerResponse> = (decision, target, context) => {
        expired.push(req.url ?? '')
        onExpire(decision, target, context)
      }
      const context = timeout.start(res, undefined, onExpireCounted, res, res, true)
      Promise.resolve()
        .then(() => handler(req, res, context))
        .then(() => handlerSettled(context, res.writableEnded))
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  it('a request answered in time never listens to its response, and leaves nothing behind', async () => {
    const added: number[] = []
    const url = await serveSettled(createTimeout({ timeoutMs: 30_000 }), (_req, res) => {
      added.push(res.listenerCount('close'))
      res.end('ok')
    })
    for (let batch = 0; batch < 4; batch++) {
      await Promise.all(Array.from({ length: 50 }, () => fetch(url).then((r) => r.text())))
    }
    expect(added).toHaveLength(200)
    expect(new Set(added)).toEqual(new Set([0]))
    expect(deadlineQueueStats().waiting).toBe(0)
    expect(liveCount()).toBe(0)
  })

  it('reading the signal starts listening: a client that leaves aborts it', async () => {
    const seen: { before: number; after: number; kind?: unknown }[] = []
    const url = await serveSettled(createTimeout({ timeoutMs: 30_000 }), async (_req, res, context) => {
      const entry: { before: number; after: number; kind?: unknown } = { before: res.listenerCount('close'), after: 0 }
      seen.push(entry)
      const signal = context.signal
      entry.after = res.listenerCount('close')
      await waitOn(signal, 5_000).catch(() => {})
      entry.kind = context.abortKind
    })
    const request = httpRequest(url)
    request.on('error', () => {})
    request.end()
    await until(() => seen.length === 1)
    request.destroy()
    await until(() => seen[0]?.kind !== undefined)
    expect(seen[0]).toEqual({ before: 0, after: 1, kind: 'client-gone' })
    await until(() => deadlineQueueStats().waiting === 0 && liveCount() === 0)
  })

  it('a client gone before the deadline of a handler that ignores it: nothing is answered, the lifecycle ends', async () => {
    const expired: string[] = []
    let finished = false
    const url = await serveSettled(
      createTimeout({ timeoutMs: 80 }),
      async (_req, res) => {
        await sleep(200) // ignores the signal
        finished = true
        res.end('late')
      },
      expired,
    )
    const request = httpRequest(url)
    request.on('error', () => {})
    request.end()
    await sleep(30)
    request.destroy()
    await sleep(100) // past the deadline, handler still running
    expect(deadlineQueueStats().waiting).toBe(0)
    expect(liveCount()).toBe(0)
    await until(() => finished)
    expect(expired).toEqual([]) // the deadline found the client gone: no 503 written to a closed socket
  })

  it('a response still being written when the handler settles is timed until it closes', async () => {
    const url = await serveSettled(createTimeout({ timeoutMs: 80 }), (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial') // a stream that stalls after the handler returned
    })
    const started = performance.now()
    const outcome = await responseOutcome(url)
    expect(outcome).toBe('cut')
    expect(performance.now() - started).toBeLessThan(80 + 200)
    await until(() => deadlineQueueStats().waiting === 0 && liveCount() === 0)
  })
})
