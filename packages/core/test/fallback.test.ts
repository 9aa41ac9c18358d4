// Fallback: which failures get the fallback value and with which reason, what passes through untouched (the
// caller's own abort, reasons not chosen), and that `run` says where the answer came from.

import diagnostics from 'node:diagnostics_channel'
import { afterEach, describe, expect, it } from 'vitest'
import { markRetriesExhausted } from '../src/fallback/reason.js'
import {
  AttemptTimeoutError,
  BulkheadFullError,
  CircuitOpenError,
  compose,
  createBulkhead,
  createCircuitBreaker,
  createFallback,
  createStaleIfError,
  DeadlineExceededError,
  type FallbackReason,
  type FallbackServedEvent,
  isInvalidOptionError,
  RequestAbortedError,
} from '../src/index.js'
import { thrown } from './helpers.js'

const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )

const served: FallbackServedEvent[] = []
const onServed = (message: unknown): void => {
  served.push(message as FallbackServedEvent)
}
diagnostics.subscribe('breakwater:fallback:served', onServed)
afterEach(() => {
  served.length = 0
})

describe('fallback', () => {
  it('passes the work’s value through and says it came from upstream', async () => {
    const fallback = createFallback({ name: 'recs', value: { items: [] as string[] } })
    await expect(fallback.run(() => ({ items: ['a'] }))).resolves.toEqual({
      value: { items: ['a'] },
      source: 'upstream',
      ageMs: 0,
    })
    await expect(fallback.execute(async () => 7)).resolves.toBe(7)
    expect(served).toEqual([])
  })

  const marked = (): Error => {
    const error = new Error('503 three times')
    markRetriesExhausted(error, 3)
    return error
  }
  const cases: Array<[string, () => unknown, FallbackReason]> = [
    ['CircuitOpenError', () => new CircuitOpenError('recs', 'open', 1), 'circuit-open'],
    ['BulkheadFullError', () => new BulkheadFullError('recs', 'full', 1), 'bulkhead-full'],
    ['AttemptTimeoutError', () => new AttemptTimeoutError('recs', 300), 'timeout'],
    ['DeadlineExceededError', () => new DeadlineExceededError('no budget'), 'timeout'],
    ['a retry that gave up (marked)', marked, 'retries-exhausted'],
    ['any other error', () => new Error('ECONNRESET'), 'error'],
    ['a thrown string', () => 'boom', 'error'],
  ]
  for (const [what, make, reason] of cases) {
    it(`answers ${what} with the fallback, reason ${reason}`, async () => {
      const error = make()
      const seen: Array<[FallbackReason, unknown]> = []
      const fallback = createFallback({
        name: 'recs',
        value: (why: FallbackReason, cause: unknown) => {
          seen.push([why, cause])
          return 'fallback'
        },
      })
      const result = await fallback.run(() => {
        throw error
      })
      expect(result).toEqual({ value: 'fallback', source: 'fallback', ageMs: 0, error })
      expect(seen).toEqual([[reason, error]])
      expect(served).toEqual([{ policy: 'recs', reason }])
    })
  }

  it('reads a retry’s give-up mark before the error’s kind; a frozen error cannot carry it', async () => {
    const timedOut = new AttemptTimeoutError('recs', 300)
    markRetriesExhausted(timedOut, 3)
    const frozen = Object.freeze(new Error('frozen'))
    markRetriesExhausted(frozen, 3)
    markRetriesExhausted('a string', 3) // no-op, no throw
    const fallback = createFallback({ name: 'recs', value: 0 })
    await fallback.execute(() => Promise.reject(timedOut))
    await fallback.execute(() => Promise.reject(frozen))
    await fallback.execute(() => Promise.reject('a string'))
    expect(served.map((event) => event.reason)).toEqual(['retries-exhausted', 'error', 'error'])
    // The mark is invisible to the caller's own inspection of the error.
    expect(Object.keys(timedOut)).not.toContain('retriesExhausted')
    expect(JSON.stringify(timedOut)).toBe(JSON.stringify(new AttemptTimeoutError('recs', 300)))
  })

  it('answers a real open circuit and a real full bulkhead when composed outside them', async () => {
    const breaker = createCircuitBreaker({ name: 'recs' })
    const fallback = createFallback({ name: 'recs', value: 'empty' })
    breaker.isolate()
    const policy = compose(fallback, breaker)
    let calls = 0
    await expect(policy.execute(() => ++calls)).resolves.toBe('empty')
    expect(calls).toBe(0)

    const bulkhead = createBulkhead({ name: 'recs', limit: 1 })
    let release: () => void = () => {}
    const holding = bulkhead.execute(() => new Promise<void>((resolve) => (release = resolve)))
    const viaBulkhead = compose(fallback, bulkhead)
    await expect(viaBulkhead.execute(() => 'called')).resolves.toBe('empty')
    release()
    await holding
    await expect(viaBulkhead.execute(() => 'called')).resolves.toBe('called')
    expect(served.map((event) => event.reason)).toEqual(['circuit-open', 'bulkhead-full'])
  })

  it('answers only the reasons in `on`; others fail as they were', async () => {
    const fallback = createFallback({ name: 'recs', value: 0, on: ['circuit-open', 'timeout'] })
    const other = new Error('500')
    await expect(settle(fallback.execute(() => Promise.reject(other)))).resolves.toBe(other)
    await expect(fallback.execute(() => Promise.reject(new AttemptTimeoutError('recs', 5)))).resolves.toBe(0)
    expect(served).toEqual([{ policy: 'recs', reason: 'timeout' }])
  })

  it('takes a predicate on the error instead of reasons', async () => {
    const fallback = createFallback({
      name: 'recs',
      value: 'spare',
      on: (error) => (error as { status?: number }).status === 503,
    })
    const unavailable = Object.assign(new Error('unavailable'), { status: 503 })
    const notFound = Object.assign(new Error('not found'), { status: 404 })
    await expect(fallback.execute(() => Promise.reject(unavailable))).resolves.toBe('spare')
    await expect(settle(fallback.execute(() => Promise.reject(notFound)))).resolves.toBe(notFound)
  })

  it('never replaces the caller’s own abort', async () => {
    const fallback = createFallback({ name: 'recs', value: 'spare' })
    const controller = new AbortController()
    const reason = new Error('client went away')
    const call = fallback.execute(
      ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      { signal: controller.signal },
    )
    controller.abort(reason)
    await expect(settle(call)).resolves.toBe(reason)

    const gone = new RequestAbortedError('client-gone', 'the client closed the connection')
    await expect(settle(fallback.execute(() => Promise.reject(gone)))).resolves.toBe(gone)
    expect(served).toEqual([])
  })

  it('never hides a configuration error (InvalidOptionError) behind the fallback value', async () => {
    const fallback = createFallback({ name: 'recs', value: 'spare' })
    const stale = createStaleIfError({ name: 'recs' })
    // No cacheKey for the stale-if-error layer inside: a bug in the call, surfaced as such.
    const error = await settle(compose(fallback, stale).execute(() => 'x'))
    expect(isInvalidOptionError(error) && error.option).toBe('cacheKey')
    expect(served).toEqual([])
  })

  it('awaits an async value, and fails with the value function’s own error when it throws', async () => {
    const later = createFallback({ name: 'recs', value: async () => ['cached'] })
    await expect(later.execute(() => Promise.reject(new Error('x')))).resolves.toEqual(['cached'])
    const broken = new Error('fallback broke')
    const throwing = createFallback({
      name: 'recs',
      value: () => {
        throw broken
      },
    })
    await expect(settle(throwing.execute(() => Promise.reject(new Error('x'))))).resolves.toBe(broken)
  })

  it('rejects bad options, naming them', () => {
    const unknownKey = thrown(() => createFallback({ name: 'x', value: 1, onn: ['error'] } as never))
    expect(isInvalidOptionError(unknownKey) && unknownKey.message).toMatch(/Unknown option "onn".*did you mean "on"/)
    const missing = thrown(() => createFallback({ name: 'x' } as never))
    expect(isInvalidOptionError(missing) && missing.option).toBe('value')
    const badReason = thrown(() => createFallback({ value: 1, on: ['open'] as never }))
    expect(isInvalidOptionError(badReason) && badReason.message).toMatch(/"on".*"circuit-open"/)
    const empty = thrown(() => createFallback({ value: 1, on: [] }))
    expect(isInvalidOptionError(empty) && empty.option).toBe('on')
  })
})
