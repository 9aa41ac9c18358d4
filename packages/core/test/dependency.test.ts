// The attempt timeout and dependency(): which of the caller's signal, the caller's deadline and the attempt
// timeout cuts an attempt, what each costs the breaker, and that nothing of a call outlives it.

import diagnostics from 'node:diagnostics_channel'
import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import {
  compose,
  createAttemptTimeout,
  createBulkhead,
  createCircuitBreaker,
  type DependencyAttemptEvent,
  type DependencyCallEvent,
  dependency,
  isAttemptTimeoutError,
  isDeadlineExceededError,
  RequestContext,
} from '../src/index.js'

const never = (): Promise<never> => new Promise(() => {})
const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

import { timedAttempts } from '../src/dependency/guarded-call.js'

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

describe('attempt timeout', () => {
  it('fails the attempt at its timeout and aborts its signal with the same error', async () => {
    const timeout = createAttemptTimeout({ name: 't', timeoutMs: 40 })
    let signal: AbortSignal | undefined
    const started = performance.now()
    const error = await settle(
      timeout.execute((ctx) => {
        signal = ctx.signal
        return never()
      }),
    )
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(39)
    expect(elapsed).toBeLessThan(200)
    expect(isAttemptTimeoutError(error)).toBe(true)
    expect(error).toMatchObject({ code: 'BW_ATTEMPT_TIMEOUT', status: 504, timeoutMs: 40 })
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBe(error)
  })

  it('the caller’s deadline, when sooner, cuts the attempt with DeadlineExceededError, not counted by the breaker', async () => {
    const dep = dependency('d', { breaker: { consecutiveFailures: 1 }, attemptTimeoutMs: 1000 })
    let deadline = 0
    const started = performance.now()
    const error = await settle(
      dep.execute(
        (ctx) => {
          deadline = ctx.deadline
          return never()
        },
        { deadline: Date.now() + 40 },
      ),
    )
    expect(performance.now() - started).toBeLessThan(300)
    expect(isDeadlineExceededError(error)).toBe(true)
    expect(deadline).toBeGreaterThan(Date.now() - 100)
    expect(deadline).toBeLessThanOrEqual(Date.now())
    expect(dep.breaker?.state).toBe('closed')
  })

  it('with no budget left, fails at once with DeadlineExceededError and touches nothing', async () => {
    const dep = dependency('d', { bulkhead: { limit: 1 } })
    let ran = false
    const error = await settle(dep.execute(() => (ran = true), { deadline: Date.now() - 1 }))
    expect(isDeadlineExceededError(error)).toBe(true)
    expect(error).toMatchObject({ status: 504 })
    expect(ran).toBe(false)
    expect(dep.bulkhead?.inFlight).toBe(0)
  })

  it('uses the request context’s signal and deadline (req.breakwater)', async () => {
    const context = new RequestContext({ timeoutMs: 40 })
    const dep = dependency('ctx', { attemptTimeoutMs: 5000 })
    let attemptSignal: AbortSignal | undefined
    const error = await settle(
      dep.execute(
        (ctx) => {
          attemptSignal = ctx.signal
          expect(ctx.deadline - Date.now()).toBeLessThanOrEqual(40)
          return never()
        },
        { context },
      ),
    )
    // The request's own deadline aborted its signal first (or the budget ran out): either way the caller's.
    expect(attemptSignal?.aborted).toBe(true)
    expect((error as { code: string }).code).toMatch(/BW_TIMEOUT|BW_DEADLINE_EXCEEDED/)
    expect(dep.breaker?.state).toBe('closed')
    context.dispose()
  })

  it('the caller’s abort rejects at once with its reason; listeners and timed entries are gone after every outcome', async () => {
    const before = timers()
    const caller = new AbortController()
    const dep = dependency('clean', { attemptTimeoutMs: 10_000 })
    const aborted = settle(
      dep.execute(
        ({ signal }) =>
          new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('ignored')))),
        { signal: caller.signal },
      ),
    )
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(1)
    caller.abort(new Error('client left'))
    expect(await aborted).toMatchObject({ message: 'client left' })
    await dep.execute(() => 'fine', { signal: caller.signal }).catch(() => {})
    const live = new AbortController()
    await dep.execute(() => Promise.resolve('fine'), { signal: live.signal })
    await settle(dep.execute(() => Promise.reject(new Error('x')), { signal: live.signal }))
    expect(getEventListeners(live.signal, 'abort')).toHaveLength(0)
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0)
    expect(timedAttempts()).toBe(0)
    // The one shared timer fires once at the deadline it was armed for and is not re-armed for an empty queue.
    expect(timers()).toBeLessThanOrEqual(before + 1)
  })
})

describe('dependency()', () => {
  it('publishes one attempt and one call event per call, with the fixed vocabulary', async () => {
    const attempts: DependencyAttemptEvent[] = []
    const calls: DependencyCallEvent[] = []
    const onAttempt = (m: unknown): void => {
      attempts.push(m as DependencyAttemptEvent)
    }
    const onCall = (m: unknown): void => {
      calls.push(m as DependencyCallEvent)
    }
    diagnostics.subscribe('breakwater:dependency:attempt', onAttempt)
    diagnostics.subscribe('breakwater:dependency:call', onCall)
    try {
      const dep = dependency('events', { breaker: { consecutiveFailures: 1 }, attemptTimeoutMs: 20 })
      await dep.execute(() => 'ok')
      await settle(dep.execute(never))
      await settle(dep.execute(() => 'rejected'))
      expect(attempts.map((a) => a.outcome)).toEqual(['success', 'timed_out', 'circuit_open'])
      expect(calls.map((c) => [c.outcome, c.attempts])).toEqual([
        ['success', 1],
        ['timed_out', 1],
        ['circuit_open', 0],
      ])
      expect(calls[1]?.durationSeconds).toBeGreaterThanOrEqual(0.019)
      expect(attempts[0]).toMatchObject({ policy: 'events', attempt: 1 })
    } finally {
      diagnostics.unsubscribe('breakwater:dependency:attempt', onAttempt)
      diagnostics.unsubscribe('breakwater:dependency:call', onCall)
    }
  })

  it('compose() nests policies so the breaker sees the inner attempt timeout as a failure', async () => {
    const breaker = createCircuitBreaker({ consecutiveFailures: 2 })
    const policy = compose(breaker, createBulkhead({ limit: 5 }), createAttemptTimeout({ timeoutMs: 10 }))
    const seen: number[] = []
    await settle(policy.execute(never))
    await settle(policy.execute(never))
    expect(breaker.state).toBe('open')
    breaker.reset()
    expect(await policy.execute((ctx) => seen.push(ctx.attempt) && 'ok', { attempt: 2 })).toBe('ok')
    expect(seen).toEqual([2])
  })

  it('rejects unknown options naming the key, and a layer named on its own', () => {
    expect(() => dependency('x', { retries: 3 } as never)).toThrow(/"retries"/)
    expect(() => dependency('x', { breaker: { name: 'y' } as never })).toThrow(/"breaker.name"/)
    expect(() => dependency('', {})).toThrow(/"name"/)
  })
})
