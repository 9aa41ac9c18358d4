// Graceful shutdown in one process over a real http.Server, driven by trigger(): draining fails readiness, the
// listener closes after the delay, in-flight work finishes or is aborted at the timeout, hooks are bounded.
// Shutdown is process-wide and one-way, so this file runs one shutdown scenario per test in order.
// The real-signal, real-process proof is test/shutdown/.

import http from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import {
  createGracefulShutdown,
  createHealth,
  isDraining,
  isInvalidOptionError,
  isShuttingDown,
  RequestContext,
} from '../src/index.js'

describe('createGracefulShutdown', () => {
  it('checks its options', () => {
    const server = http.createServer()
    const bad = (options: object) => {
      try {
        createGracefulShutdown(server, { signals: false, ...options })
      } catch (error) {
        if (isInvalidOptionError(error)) return error.option
        throw error
      }
      return 'accepted'
    }
    expect(bad({ timeoutMs: 1_000, drainDelayMs: 2_000 })).toBe('timeoutMs')
    expect(bad({ hooks: ['x'] })).toBe('hooks[0]')
    expect(bad({ exit: 'yes' })).toBe('exit')
    expect(bad({ drainDelayMs: 0, timeoutMs: 10 })).toBe('accepted')
    expect(() => createGracefulShutdown({} as never)).toThrow(/server/)
  })

  it('drains, waits for a hung request until the timeout, aborts it, runs bounded hooks and reports exit 1', async () => {
    let handlerSawAbort: unknown
    const server = http.createServer((req, res) => {
      const context = new RequestContext()
      if (req.url === '/hang') {
        context.signal.addEventListener('abort', () => {
          handlerSawAbort = context.signal.reason
          res.writeHead(503).end('aborted')
        })
        return
      }
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    const health = createHealth({ started: true })
    const hookOrder: string[] = []
    const exits: number[] = []
    const shutdown = createGracefulShutdown(server, {
      signals: false,
      drainDelayMs: 150,
      timeoutMs: 500,
      hookTimeoutMs: 100,
      exit: (code) => exits.push(code),
      hooks: [
        { name: 'stuck', run: () => new Promise(() => {}) },
        { name: 'flush', run: () => void hookOrder.push('flush') },
      ],
    })

    const hung = fetch(`http://127.0.0.1:${port}/hang`).then(async (r) => [r.status, await r.text()])
    await sleep(30)
    expect((await health.answer('ready')).statusCode).toBe(200)
    const started = performance.now()
    const result = shutdown.trigger('test')
    expect(shutdown.trigger('again')).toBe(result) // once
    expect(isDraining()).toBe(true)
    expect((await health.answer('ready')).statusCode).toBe(503)
    expect((await health.answer('live')).statusCode).toBe(200)
    // During the drain delay the server still answers.
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok')
    await sleep(200)
    // After it, new connections are refused.
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow()

    expect(await hung).toEqual([503, 'aborted'])
    const outcome = await result
    const elapsed = performance.now() - started
    expect(outcome).toMatchObject({ exitCode: 1, timedOut: true, failedHooks: ['stuck'] })
    expect(exits).toEqual([1])
    expect(hookOrder).toEqual(['flush'])
    expect(handlerSawAbort).toMatchObject({ kind: 'shutdown', code: 'BW_SHUTDOWN' })
    expect(isShuttingDown()).toBe(true)
    expect(elapsed).toBeGreaterThanOrEqual(495)
    expect(elapsed).toBeLessThan(500 + 100 + 400) // timeout + one hook's timeout + slack
    expect(shutdown.state).toBe('done')
  })
})
