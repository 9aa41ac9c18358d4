import { getEventListeners } from 'node:events'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import {
  createTimeout,
  DEFAULT_DEADLINE_HEADER,
  ErrorCode,
  isDeadlineExceededError,
  isInvalidOptionError,
  isRequestAbortedError,
  RequestContext,
} from '../src/index.js'
import { deadlineQueueStats } from '../src/timeout/request-context.js'
import { cancelForShutdown, liveCount } from '../src/timeout/shutdown.js'
import { breakwaterTimersDuring } from './helpers.js'

/** Resolves with the elapsed ms when `signal` aborts. */
function abortedAfter(signal: AbortSignal, started: number): Promise<number> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(performance.now() - started)))
}

describe('RequestContext deadline', () => {
  it('aborts its signal at the deadline (± scheduling slack) with a typed timeout reason', async () => {
    const started = performance.now()
    const context = new RequestContext({ timeoutMs: 80 })
    const elapsed = await abortedAfter(context.signal, started)
    expect(elapsed).toBeGreaterThanOrEqual(79)
    expect(elapsed).toBeLessThan(80 + 60)
    const reason = context.signal.reason
    expect(isRequestAbortedError(reason)).toBe(true)
    expect(reason).toMatchObject({ kind: 'timeout', code: ErrorCode.Timeout, status: 503, name: 'TimeoutError' })
    expect(context.abortKind).toBe('timeout')
    expect(context.remainingMs()).toBe(0)
    context.dispose()
  })

  it('aborts at the deadline even when the signal is first read afterwards (lazy controller)', async () => {
    const context = new RequestContext({ timeoutMs: 20 })
    await sleep(40)
    expect(context.abortReason?.kind).toBe('timeout')
    expect(context.signal.aborted).toBe(true)
    expect(context.signal.reason).toBe(context.abortReason)
    context.dispose()
  })

  it('reports remaining budget and an absolute deadline comparable with Date.now()', async () => {
    const before = Date.now()
    const context = new RequestContext({ timeoutMs: 1_000 })
    expect(context.timeoutMs).toBe(1_000)
    expect(context.remainingMs()).toBeGreaterThan(990)
    expect(context.remainingMs()).toBeLessThanOrEqual(1_000)
    expect(context.deadline).toBeGreaterThanOrEqual(before + 990)
    expect(context.deadline).toBeLessThanOrEqual(Date.now() + 1_000)
    expect(context.deadline).toBe(context.deadline) // stable across reads
    await sleep(50)
    expect(context.remainingMs()).toBeLessThan(960)
    context.dispose()
    expect(context.signal.aborted).toBe(false) // a completed request's signal is not aborted by dispose
  })

  it('has no deadline and an infinite budget without timeoutMs', () => {
    const context = new RequestContext()
    expect(context.deadline).toBe(Number.POSITIVE_INFINITY)
    expect(context.remainingMs()).toBe(Number.POSITIVE_INFINITY)
    expect(context.forwardHeaders()).toEqual({})
    context.dispose()
  })

  it('never aborts after dispose: the timer is cleared', async () => {
    const context = new RequestContext({ timeoutMs: 20 })
    const signal = context.signal
    context.dispose()
    await sleep(50)
    expect(signal.aborted).toBe(false)
  })

  it('rejects an invalid timeoutMs naming the option and value', () => {
    expect(() => new RequestContext({ timeoutMs: -5 })).toThrow(/"timeoutMs".*-5/)
    expect(() => new RequestContext({ timeoutMs: Number.NaN })).toThrow(/"timeoutMs".*NaN/)
    expect(liveCount()).toBe(0)
  })
})

describe('no leaks', () => {
  it('100k contexts share one deadline timer and leave nothing waiting, no shutdown registrations', async () => {
    const contexts: RequestContext[] = []
    const remaining = await breakwaterTimersDuring(async () => {
      for (let i = 0; i < 100_000; i++) {
        const context = new RequestContext({ timeoutMs: 30_001 })
        if (i % 3 === 0) void context.signal // some handlers read the signal, most do not
        contexts.push(context)
        // Up to 64 in flight at once, ended out of order now and then.
        if (contexts.length > 64) (contexts.splice(i % 7 === 0 ? 32 : 0, 1)[0] as RequestContext).dispose()
      }
      for (const context of contexts) context.dispose()
    })
    // One timer for the budget's queue, unref'd, left to fire once and find the queue empty.
    expect(remaining).toEqual({ created: 1, live: 1 })
    expect(deadlineQueueStats().waiting).toBe(0)
    expect(liveCount()).toBe(0)
  })

  it('counts exactly the open contexts, whichever end (newest, oldest, middle) is disposed, twice or not', () => {
    const before = liveCount()
    const [a, b, c, d, e] = Array.from({ length: 5 }, () => new RequestContext())
    expect(liveCount()).toBe(before + 5)
    e!.dispose() // the newest
    a!.dispose() // the oldest
    c!.dispose() // one in the middle
    c!.dispose() // again: nothing more to remove
    expect(liveCount()).toBe(before + 2)
    const f = new RequestContext()
    d!.dispose()
    b!.dispose()
    expect(liveCount()).toBe(before + 1)
    f.dispose()
    expect(liveCount()).toBe(before)
  })

  it('expires contexts sharing a budget in deadline order, also when armed out of order', async () => {
    const policy = createTimeout({ timeoutMs: 70 })
    const order: string[] = []
    const early = new RequestContext()
    await sleep(15)
    const late = new RequestContext()
    const middle = new RequestContext({ timeoutMs: 62 }) // its own budget (own queue): due between the two
    // Armed in the opposite order of their starts: the queue must still expire `early` first.
    policy.arm(late, undefined, undefined, undefined)
    policy.arm(early, undefined, undefined, undefined)
    for (const [name, context] of Object.entries({ early, late, middle })) {
      context.signal.addEventListener('abort', () => order.push(name))
    }
    expect(deadlineQueueStats().waiting).toBeGreaterThanOrEqual(3)
    await sleep(150)
    expect(order).toEqual(['early', 'middle', 'late'])
    for (const context of [early, late, middle]) context.dispose()
    expect(deadlineQueueStats().waiting).toBe(0)
  })

  it('child signals leave no timers and no abort listeners on the request signal after dispose', async () => {
    const contexts: RequestContext[] = []
    const remaining = await breakwaterTimersDuring(async () => {
      for (let i = 0; i < 1_000; i++) {
        const context = new RequestContext({ timeoutMs: 30_000 })
        context.timeoutSignal(10_000)
        context.timeoutSignal(20_000)
        contexts.push(context)
      }
      for (const context of contexts) context.dispose()
    })
    // The child timers are cleared; the request deadlines share one queue timer (created once, unref'd).
    expect(remaining.created).toBeGreaterThanOrEqual(2_000)
    expect(remaining.created).toBeLessThanOrEqual(2_001)
    expect(remaining.live).toBe(remaining.created - 2_000)
    expect(deadlineQueueStats().waiting).toBe(0)
    for (const context of contexts) expect(getEventListeners(context.signal, 'abort')).toHaveLength(0)
  })

  it('an expired deadline clears itself: the timer is gone once it fired', async () => {
    let context: RequestContext | undefined
    const remaining = await breakwaterTimersDuring(async () => {
      // Long enough to still be pending when the helper counts (it waits a few ticks), even on a busy machine.
      context = new RequestContext({ timeoutMs: 250 })
    })
    expect(remaining).toEqual({ created: 1, live: 1 })
    await sleep(400)
    expect(context?.abortKind).toBe('timeout')
    const after = await breakwaterTimersDuring(async () => context?.dispose())
    expect(after).toEqual({ created: 0, live: 0 })
  })

  it('timers are unref()d: a pending deadline does not keep the event loop alive', () => {
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const context = new RequestContext({ timeoutMs: 60_000 })
    context.timeoutSignal(30_000)
    const after = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    expect(after).toBe(before)
    context.dispose()
  })
})

describe('timeoutSignal', () => {
  it('is bounded by the remaining budget: the request signal itself when ms is beyond it', () => {
    const context = new RequestContext({ timeoutMs: 100 })
    expect(context.timeoutSignal(500)).toBe(context.signal)
    expect(context.timeoutSignal()).toBe(context.signal)
    context.dispose()
  })

  it('aborts after its own ms with a DeadlineExceededError while the request stays alive', async () => {
    const context = new RequestContext({ timeoutMs: 1_000 })
    const started = performance.now()
    const child = context.timeoutSignal(40)
    const elapsed = await abortedAfter(child, started)
    expect(elapsed).toBeGreaterThanOrEqual(39)
    expect(elapsed).toBeLessThan(40 + 60)
    expect(isDeadlineExceededError(child.reason)).toBe(true)
    expect(child.reason).toMatchObject({ code: ErrorCode.DeadlineExceeded, status: 504, statusCode: 504, neededMs: 40 })
    expect(context.signal.aborted).toBe(false)
    context.dispose()
  })

  it('aborts with the request’s reason when the request aborts first', async () => {
    const context = new RequestContext({ timeoutMs: 30 })
    const child = context.timeoutSignal(25)
    const unbounded = new RequestContext()
    const childOfUnbounded = unbounded.timeoutSignal(10_000)
    expect(childOfUnbounded).not.toBe(unbounded.signal)
    unbounded.dispose()
    await sleep(60)
    expect(child.aborted).toBe(true)
    // 25 ms < 30 ms: the child's own timer fired first
    expect(isDeadlineExceededError(child.reason)).toBe(true)

    const second = new RequestContext({ timeoutMs: 1_000 })
    const longChild = second.timeoutSignal(500)
    const shortRequest = new RequestContext({ timeoutMs: 20 })
    const relayed = shortRequest.timeoutSignal(15_000) // beyond budget: the request signal itself
    await sleep(50)
    expect(relayed.reason).toMatchObject({ kind: 'timeout' })
    expect(longChild.aborted).toBe(false)
    second.dispose()
    shortRequest.dispose()
  })

  it('relays a request abort to an outstanding child signal', () => {
    const context = new RequestContext()
    const child = context.timeoutSignal(10_000)
    context[cancelForShutdown]() // what triggerShutdown() does to each live context (tested globally elsewhere)
    expect(child.aborted).toBe(true)
    expect(child.reason).toMatchObject({ kind: 'shutdown', code: ErrorCode.Shutdown })
    expect(getEventListeners(context.signal, 'abort')).toHaveLength(0)
  })

  it('is already aborted for a zero budget, and rejects a negative one', () => {
    const context = new RequestContext({ timeoutMs: 1_000 })
    const zero = context.timeoutSignal(0)
    expect(zero.aborted).toBe(true)
    expect(isDeadlineExceededError(zero.reason)).toBe(true)
    expect(() => context.timeoutSignal(-1)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption }))
    context.dispose()
  })
})

describe('requireBudget', () => {
  it('passes while enough budget is left and throws a typed 504 error when not', () => {
    const context = new RequestContext({ timeoutMs: 200 })
    expect(() => context.requireBudget(50)).not.toThrow()
    let thrown: unknown
    try {
      context.requireBudget(500)
    } catch (error) {
      thrown = error
    }
    expect(isDeadlineExceededError(thrown)).toBe(true)
    expect(thrown).toMatchObject({ status: 504, neededMs: 500 })
    expect((thrown as { remainingMs: number }).remainingMs).toBeLessThanOrEqual(200)
    context.dispose()
  })

  it('throws the abort reason once the request has been aborted', async () => {
    const context = new RequestContext({ timeoutMs: 10 })
    await sleep(30)
    expect(() => context.requireBudget(0)).toThrow(context.abortReason)
    expect(isRequestAbortedError(context.abortReason)).toBe(true)
    context.dispose()
  })

  it('rejects a non-number', () => {
    const context = new RequestContext()
    let thrown: unknown
    try {
      context.requireBudget('10' as unknown as number)
    } catch (error) {
      thrown = error
    }
    expect(isInvalidOptionError(thrown)).toBe(true)
    context.dispose()
  })
})

describe('forwardHeaders', () => {
  it('carries the remaining whole milliseconds under the default header', async () => {
    const context = new RequestContext({ timeoutMs: 500 })
    await sleep(20)
    const headers = context.forwardHeaders()
    expect(Object.keys(headers)).toEqual([DEFAULT_DEADLINE_HEADER])
    const value = Number(headers[DEFAULT_DEADLINE_HEADER])
    expect(Number.isInteger(value)).toBe(true)
    expect(value).toBeLessThanOrEqual(481)
    expect(value).toBeGreaterThan(300)
    context.dispose()
  })

  it('uses a configured header and forwards 0 once the deadline has passed', async () => {
    const context = new RequestContext({ timeoutMs: 5, header: 'X-Budget' })
    await sleep(20)
    expect(context.forwardHeaders()).toEqual({ 'X-Budget': '0' })
    context.dispose()
  })
})
