import diagnostics from 'node:diagnostics_channel'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createTimeout,
  DeadlineExceededError,
  ErrorCode,
  isInvalidOptionError,
  PROBLEM_CONTENT_TYPE,
  RequestAbortedError,
  RequestContext,
  type TimeoutDecisionEvent,
} from '../src/index.js'
import { view } from './helpers.js'

describe('options', () => {
  it.each([
    [{ timeoutMs: 0 }, /"timeoutMs".*got 0/],
    [{ timeoutMs: -1 }, /"timeoutMs".*-1/],
    [{ timeoutMs: '2 fortnights' }, /"timeoutMs".*"2 fortnights"/],
    [{ timeoutMs: 2 ** 31 }, /"timeoutMs".*2147483648/],
    [{ header: 'bad header' }, /"header".*"bad header"/],
    [{ header: '' }, /"header".*""/],
    [{ trustDeadlineHeader: 'yes' }, /"trustDeadlineHeader".*"yes"/],
    [{ id: '' }, /"id"/],
    [{ message: 42 }, /"message".*42/],
  ])('rejects %o at construction', (options, message) => {
    let thrown: unknown
    try {
      createTimeout(options as never)
    } catch (error) {
      thrown = error
    }
    expect(isInvalidOptionError(thrown)).toBe(true)
    expect((thrown as Error).message).toMatch(message)
  })

  it('defaults to a 10 s budget and the Request-Timeout-Ms header, and accepts duration strings', () => {
    const timeout = createTimeout()
    expect(timeout.timeoutMs).toBe(10_000)
    expect(timeout.header).toBe('Request-Timeout-Ms')
    expect(timeout.id).toBe('timeout')
    expect(createTimeout({ timeoutMs: '250ms' }).timeoutMs).toBe(250)
    expect(createTimeout({ timeoutMs: '2s' }).timeoutMs).toBe(2_000)
  })
})

describe('incoming deadline header', () => {
  const withHeader = (value: string, ip = '192.0.2.1') => view(ip, { 'request-timeout-ms': value })

  it('is ignored unless trustDeadlineHeader is enabled', () => {
    expect(createTimeout({ timeoutMs: 1_000 }).budgetOf(withHeader('50'))).toBe(1_000)
  })

  it('shortens the budget to the caller’s, but never lengthens it past the route’s timeout', () => {
    const timeout = createTimeout({ timeoutMs: 1_000, trustDeadlineHeader: true })
    expect(timeout.budgetOf(withHeader('50'))).toBe(50)
    expect(timeout.budgetOf(withHeader('60000'))).toBe(1_000)
    expect(timeout.budgetOf(view())).toBe(1_000)
  })

  it('ignores malformed values', () => {
    const timeout = createTimeout({ timeoutMs: 1_000, trustDeadlineHeader: true })
    for (const bad of ['-5', '1e3', 'soon', '', '12.5', '99999999999'])
      expect(timeout.budgetOf(withHeader(bad))).toBe(1_000)
  })

  it('is honoured only for callers the trust function accepts', () => {
    const timeout = createTimeout({ timeoutMs: 1_000, trustDeadlineHeader: (request) => request.ip === '10.0.0.5' })
    expect(timeout.budgetOf(withHeader('50', '10.0.0.5'))).toBe(50)
    expect(timeout.budgetOf(withHeader('50', '203.0.113.9'))).toBe(1_000)
  })

  it('reads a configured header and arms the context with the shortened budget', async () => {
    const timeout = createTimeout({ timeoutMs: 5_000, header: 'X-Budget-Ms', trustDeadlineHeader: true })
    const context = new RequestContext()
    expect(timeout.arm(context, view('192.0.2.1', { 'x-budget-ms': '30' }))).toBe(true)
    expect(context.timeoutMs).toBe(30)
    expect(context.forwardHeaders()).toHaveProperty('X-Budget-Ms')
    await sleep(60)
    expect(context.abortKind).toBe('timeout')
    context.dispose()
  })

  it('a caller with no budget left is over budget at once: arm returns false and the context is aborted', () => {
    const timeout = createTimeout({ timeoutMs: 1_000, trustDeadlineHeader: true })
    const context = new RequestContext()
    expect(timeout.arm(context, withHeader('0'))).toBe(false)
    expect(context.abortReason).toMatchObject({ kind: 'timeout', code: ErrorCode.Timeout })
    expect(timeout.decisionFor(context.abortReason)?.status).toBe(503)
    context.dispose()
  })
})

describe('decisions', () => {
  const timeout = createTimeout({ timeoutMs: 1_000 })

  it('answers the deadline with a 503 about:blank problem coded BW_TIMEOUT', () => {
    expect(timeout.timedOut).toEqual({
      action: 'reject',
      status: 503,
      headers: [['Content-Type', PROBLEM_CONTENT_TYPE]],
      body: {
        type: 'about:blank',
        title: 'Service Unavailable',
        status: 503,
        detail: 'The request did not complete within its deadline.',
        code: 'BW_TIMEOUT',
      },
    })
    expect(Object.isFrozen(timeout.timedOut.body)).toBe(true)
    expect(createTimeout({ message: 'Too slow.' }).timedOut.body.detail).toBe('Too slow.')
  })

  it('maps a DeadlineExceededError from the handler to 504, its own reasons to 503, anything else to nothing', () => {
    expect(timeout.decisionFor(new DeadlineExceededError('upstream'))).toMatchObject({
      status: 504,
      body: { type: 'about:blank', title: 'Gateway Timeout', status: 504, code: 'BW_DEADLINE_EXCEEDED' },
    })
    expect(timeout.decisionFor(new RequestAbortedError('timeout', 'x'))?.body.code).toBe('BW_TIMEOUT')
    expect(timeout.decisionFor(new RequestAbortedError('shutdown', 'x'))?.body.code).toBe('BW_SHUTDOWN')
    expect(timeout.decisionFor(new RequestAbortedError('client-gone', 'x'))).toBeUndefined()
    expect(timeout.decisionFor(new Error('boom'))).toBeUndefined()
    expect(timeout.decisionFor(undefined)).toBeUndefined()
  })

  it('finds the typed error as the cause of an AbortError from Node’s own APIs', async () => {
    const signal = AbortSignal.abort(new DeadlineExceededError('upstream'))
    const wrapped = await sleep(10, undefined, { signal }).catch((error: unknown) => error)
    expect((wrapped as Error).name).toBe('AbortError')
    expect(timeout.decisionFor(wrapped)?.status).toBe(504)
  })

  it('recognises a DeadlineExceededError from another copy of the package by its brand', () => {
    const foreign = Object.assign(new Error('x'), {
      code: 'BW_DEADLINE_EXCEEDED',
      [Symbol.for('breakwater.error')]: true,
    })
    expect(timeout.decisionFor(foreign)?.status).toBe(504)
  })
})

describe('events', () => {
  const received: TimeoutDecisionEvent[] = []
  const listener = (message: unknown) => received.push(message as TimeoutDecisionEvent)
  const subscribe = () => diagnostics.subscribe('breakwater:timeout:decision', listener)
  afterEach(() => {
    diagnostics.unsubscribe('breakwater:timeout:decision', listener)
    received.length = 0
  })

  it('asks adapters for the request only when a trusted header or a subscriber needs it', () => {
    expect(createTimeout().wantsRequest).toBe(false)
    expect(createTimeout({ trustDeadlineHeader: true }).wantsRequest).toBe(true)
    const policy = createTimeout()
    subscribe()
    expect(policy.wantsRequest).toBe(true)
  })

  it('publishes timed_out once at the deadline, with durations in seconds and the request view', async () => {
    subscribe()
    const timeout = createTimeout({ id: 'api', timeoutMs: 30 })
    const request = view()
    const context = new RequestContext()
    const expired: number[] = []
    timeout.arm(context, request, (decision) => expired.push(decision.status), undefined)
    await sleep(60)
    context.dispose()
    expect(expired).toEqual([503])
    expect(received).toHaveLength(1)
    const [event] = received
    expect(event).toMatchObject({ policy: 'api', outcome: 'timed_out', timeoutSeconds: 0.03, request })
    expect(event?.durationSeconds).toBeGreaterThanOrEqual(0.029)
    expect(event?.durationSeconds).toBeLessThan(0.2)
  })

  it('publishes completed when the request ends in time, and deadline_exceeded for a 504', () => {
    subscribe()
    const timeout = createTimeout({ timeoutMs: 1_000 })
    const ok = new RequestContext()
    timeout.arm(ok, view())
    ok.dispose()
    const failed = new RequestContext()
    timeout.arm(failed, view())
    timeout.decisionFor(new DeadlineExceededError('upstream'), failed)
    failed.dispose()
    expect(received.map((e) => e.outcome)).toEqual(['completed', 'deadline_exceeded'])
  })

  it('publishes nothing for contexts no timeout policy armed', () => {
    subscribe()
    new RequestContext({ timeoutMs: 1_000 }).dispose()
    expect(received).toHaveLength(0)
  })
})

describe('per-route override', () => {
  it('a later policy replaces the budget, counted from the start of the request', async () => {
    const app = createTimeout({ timeoutMs: 5_000 })
    const route = createTimeout({ timeoutMs: 40 })
    const context = new RequestContext()
    app.arm(context, view())
    await sleep(20)
    route.arm(context, view())
    expect(context.timeoutMs).toBe(40)
    expect(context.remainingMs()).toBeLessThanOrEqual(21)
    await sleep(40)
    expect(context.abortKind).toBe('timeout')
    context.dispose()
  })
})
