// Shutdown is one-way and process-wide, so it has this file (and its worker) to itself.

import diagnostics from 'node:diagnostics_channel'
import { describe, expect, it } from 'vitest'
import {
  createTimeout,
  ErrorCode,
  isShuttingDown,
  onShutdown,
  RequestContext,
  type TimeoutDecisionEvent,
  triggerShutdown,
} from '../src/index.js'
import { liveCount } from '../src/timeout/shutdown.js'
import { view } from './helpers.js'

describe('shutdown', () => {
  it('aborts every open context with a shutdown reason, answers armed ones 503, and notifies subscribers once', () => {
    const events: TimeoutDecisionEvent[] = []
    const listener = (message: unknown) => events.push(message as TimeoutDecisionEvent)
    diagnostics.subscribe('breakwater:timeout:decision', listener)
    const timeout = createTimeout({ timeoutMs: 30_000 })
    const plain = new RequestContext()
    const armed = new RequestContext()
    const answers: unknown[] = []
    timeout.arm(armed, view(), (decision, target) => answers.push([decision.body.code, target]), 'reply')
    const child = armed.timeoutSignal(10_000)
    const done = new RequestContext()
    // Registered between the others and ended before shutdown: only the open ones are cancelled.
    const between = new RequestContext()
    const last = new RequestContext()
    between.dispose()
    last.dispose()
    done.dispose()
    let notified = 0
    onShutdown(() => notified++)
    const unsubscribe = onShutdown(() => notified++)
    unsubscribe()
    expect(isShuttingDown()).toBe(false)
    expect(liveCount()).toBe(2)

    triggerShutdown()
    triggerShutdown() // idempotent

    expect(isShuttingDown()).toBe(true)
    expect(plain.signal.reason).toMatchObject({ kind: 'shutdown', code: ErrorCode.Shutdown, name: 'AbortError' })
    expect(armed.abortKind).toBe('shutdown')
    expect(child.aborted).toBe(true)
    expect(answers).toEqual([['BW_SHUTDOWN', 'reply']])
    expect(done.signal.aborted).toBe(false)
    expect(between.signal.aborted).toBe(false)
    expect(last.signal.aborted).toBe(false)
    expect(notified).toBe(1)
    expect(liveCount()).toBe(0)
    expect(events.map((e) => e.outcome)).toEqual(['shutdown'])
    diagnostics.unsubscribe('breakwater:timeout:decision', listener)
  })

  it('contexts created after shutdown start aborted, and late subscribers run at once', () => {
    const context = new RequestContext({ timeoutMs: 1_000 })
    expect(context.abortKind).toBe('shutdown')
    expect(context.signal.aborted).toBe(true)
    const armed = new RequestContext()
    expect(createTimeout().arm(armed, view())).toBe(false)
    let ran = false
    onShutdown(() => {
      ran = true
    })
    expect(ran).toBe(true)
    expect(liveCount()).toBe(0)
  })
})
