// Retry: classification and Retry-After, backoff bounds and distributions on an injected random source, the
// budget's arithmetic at both clamps on an injected clock, and the retry loop's rules (deadline, caller abort,
// idempotency, open breaker, attempt numbers, last error).

import { describe, expect, it } from 'vitest'
import {
  AttemptTimeoutError,
  CircuitOpenError,
  createRetry,
  DeadlineExceededError,
  dependency,
  discardResult,
  isCircuitOpenError,
  isRetryableOutcome,
  RetryBudget,
  retryAfterMs,
} from '../src/index.js'
import { backoffDelay } from '../src/retry/backoff.js'
import { parseRetryAfter } from '../src/retry/classify.js'
import { manualClock } from './helpers.js'

const settle = (p: Promise<unknown>): Promise<unknown> =>
  p.then(
    (v) => v,
    (e: unknown) => e,
  )
const reset = (): Error => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
const status = (code: number, headers: Record<string, string> = {}) => new Response(null, { status: code, headers })

/** A seeded generator (mulberry32): distributions are checked on a reproducible stream. */
function seeded(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('classification', () => {
  it('retries connection errors (also wrapped by fetch), attempt timeouts, 502/503/504 and 429 with Retry-After', () => {
    expect(isRetryableOutcome({ error: reset() })).toBe(true)
    const fetchFailed = new TypeError('fetch failed', {
      cause: Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }),
    })
    expect(isRetryableOutcome({ error: fetchFailed })).toBe(true)
    expect(isRetryableOutcome({ error: new AttemptTimeoutError('d', 100) })).toBe(true)
    for (const code of [502, 503, 504]) expect(isRetryableOutcome({ result: status(code) })).toBe(true)
    expect(isRetryableOutcome({ result: { statusCode: 503, headers: {} } })).toBe(true) // undici request()
    expect(isRetryableOutcome({ result: status(429, { 'retry-after': '1' }) })).toBe(true)
  })

  it('does not retry other 4xx/5xx, plain errors, the caller’s deadline or abort, an open circuit', () => {
    for (const code of [400, 404, 409, 429, 500, 501]) expect(isRetryableOutcome({ result: status(code) })).toBe(false)
    expect(isRetryableOutcome({ result: 'ok' })).toBe(false)
    expect(isRetryableOutcome({ error: new Error('boom') })).toBe(false)
    expect(isRetryableOutcome({ error: new DeadlineExceededError('late') })).toBe(false)
    expect(isRetryableOutcome({ error: new DOMException('aborted', 'AbortError') })).toBe(false)
    expect(isRetryableOutcome({ error: new CircuitOpenError('d', 'open', 1) })).toBe(false)
    expect(isRetryableOutcome({ error: Object.assign(new Error('x'), { code: 'ENOTFOUND' }) })).toBe(false)
  })

  it('reads Retry-After as delta seconds or any of the three HTTP-date forms, and garbage as absent', () => {
    const now = Date.parse('Fri, 04 Dec 2026 19:00:00 GMT')
    expect(retryAfterMs({ result: status(503, { 'retry-after': '3' }) }, now)).toBe(3000)
    expect(retryAfterMs({ result: { statusCode: 503, headers: { 'retry-after': '0' } } }, now)).toBe(0)
    expect(parseRetryAfter('Fri, 04 Dec 2026 19:00:05 GMT', now)).toBe(5000)
    expect(parseRetryAfter('Friday, 04-Dec-26 19:00:07 GMT', now)).toBe(7000)
    expect(parseRetryAfter('Fri Dec  4 19:00:09 2026', now)).toBe(9000)
    expect(parseRetryAfter('Fri, 04 Dec 2026 18:00:00 GMT', now)).toBe(0) // already past
    for (const garbage of ['soon', '-1', '1.5', '', 'Fri, 99 Dec 2026 19:00:00 GMT', '1e3', ' 12abc']) {
      expect(parseRetryAfter(garbage, now)).toBeUndefined()
    }
    expect(retryAfterMs({ result: status(503) }, now)).toBeUndefined()
    expect(retryAfterMs({ error: { response: status(503, { 'retry-after': '2' }) } }, now)).toBe(2000)
  })

  it('discardResult cancels an unread fetch body and leaves other values alone', async () => {
    const body = new ReadableStream({ pull: () => {} })
    const response = new Response(body)
    discardResult(response)
    await expect(response.text()).rejects.toThrow() // cancelled: the stream is done for
    expect(() => discardResult('text')).not.toThrow()
    expect(() => discardResult(null)).not.toThrow()
    let destroyed = false
    discardResult({ statusCode: 503, body: { destroy: () => (destroyed = true) } })
    expect(destroyed).toBe(true)
  })
})

describe('backoff', () => {
  it('full jitter stays in [0, min(cap, base·2^n)) and its mean is half the window', () => {
    const random = seeded(1)
    for (const [retry, window] of [
      [0, 100],
      [1, 200],
      [3, 800],
      [6, 5000], // capped
    ] as const) {
      let sum = 0
      let min = Number.POSITIVE_INFINITY
      let max = 0
      const n = 20_000
      for (let i = 0; i < n; i++) {
        const delay = backoffDelay('full-jitter', retry, 0, 100, 5000, random)
        sum += delay
        min = Math.min(min, delay)
        max = Math.max(max, delay)
      }
      expect(min).toBeGreaterThanOrEqual(0)
      expect(min).toBeLessThan(window * 0.01) // the whole window is used…
      expect(max).toBeLessThan(window)
      expect(max).toBeGreaterThan(window * 0.99)
      expect(sum / n / window).toBeCloseTo(0.5, 1.5) // …uniformly: mean half the window, ± ~0.016
    }
    expect(backoffDelay('full-jitter', 2, 0, 100, 5000, () => 0)).toBe(0)
    expect(backoffDelay('full-jitter', 2, 0, 100, 5000, () => 0.999999)).toBeLessThan(400)
  })

  it('decorrelated jitter stays in [base, min(cap, previous·3)); constant is the base', () => {
    const random = seeded(2)
    let previous = 0
    let outside = 0
    for (let i = 0; i < 10_000; i++) {
      const delay = backoffDelay('decorrelated-jitter', i % 5, previous, 100, 2000, random)
      if (delay < 100 || delay > Math.min(2000, Math.max(previous, 100) * 3)) outside++
      previous = delay
    }
    expect(outside).toBe(0)
    expect(backoffDelay('decorrelated-jitter', 0, 0, 100, 2000, () => 0)).toBe(100)
    expect(backoffDelay('constant', 5, 0, 100, 2000, () => 0.7)).toBe(100)
  })
})

describe('retry budget', () => {
  it('allows retries up to the ratio of first attempts in the window, and the floor beyond', () => {
    const clock = manualClock()
    const budget = new RetryBudget({ ratio: 0.2, perSecond: 0, clock: clock.now })
    expect(budget.tryRetry()).toBe(false) // no traffic, no floor: nothing
    for (let i = 0; i < 100; i++) budget.recordFirst()
    let allowed = 0
    while (budget.tryRetry()) allowed++
    expect(allowed).toBe(20)
    clock.advance(10_001) // the window slid past every first attempt and retry
    expect(budget.tryRetry()).toBe(false)
    for (let i = 0; i < 5; i++) budget.recordFirst()
    expect(budget.tryRetry()).toBe(true) // 5 × 0.2 = exactly one, despite binary fractions
    expect(budget.tryRetry()).toBe(false)
  })

  it('the floor refills at perSecond and never banks more than one second’s worth (upper clamp)', () => {
    const clock = manualClock()
    const budget = new RetryBudget({ ratio: 0, perSecond: 10, clock: clock.now })
    let allowed = 0
    while (budget.tryRetry()) allowed++
    expect(allowed).toBe(10) // starts full
    clock.advance(500)
    allowed = 0
    while (budget.tryRetry()) allowed++
    expect(allowed).toBe(5)
    clock.advance(3_600_000) // an idle hour banks no burst
    expect(budget.available).toBe(10)
    allowed = 0
    while (budget.tryRetry()) allowed++
    expect(allowed).toBe(10)
  })

  it('never goes below zero (lower clamp): refused retries cost nothing and it recovers at the refill rate', () => {
    const clock = manualClock()
    const budget = new RetryBudget({ ratio: 0, perSecond: 10, clock: clock.now })
    while (budget.tryRetry()) {}
    for (let i = 0; i < 1000; i++) expect(budget.tryRetry()).toBe(false)
    clock.advance(100)
    expect(budget.tryRetry()).toBe(true) // one token after 100 ms, not minus a thousand
    expect(budget.tryRetry()).toBe(false)
    expect(budget.available).toBe(0)
  })

  it('rejects options outside its ranges, naming them', () => {
    expect(() => new RetryBudget({ ratio: -0.1 })).toThrow(/budget\.ratio/)
    expect(() => new RetryBudget({ ratio: 11 })).toThrow(/budget\.ratio/)
    expect(() => new RetryBudget({ windowMs: 500 })).toThrow(/budget\.windowMs/)
    expect(() => new RetryBudget({ perSecond: -1 })).toThrow(/budget\.perSecond/)
    expect(() => new RetryBudget({ ratoi: 1 } as never)).toThrow(/did you mean "ratio"/)
  })
})

describe('createRetry', () => {
  const fast = { baseMs: 1, capMs: 2, budget: false } as const

  it('retries a retryable error with attempt numbers counting up, and returns the success', async () => {
    const retry = createRetry({ name: 'r', ...fast })
    const seen: number[] = []
    const value = await retry.execute(({ attempt }) => {
      seen.push(attempt)
      if (attempt < 3) throw reset()
      return 'ok'
    })
    expect(value).toBe('ok')
    expect(seen).toEqual([1, 2, 3])
  })

  it('surfaces the last error when attempts run out, and returns the last retryable result as it is', async () => {
    const retry = createRetry({ name: 'r', attempts: 2, ...fast })
    let n = 0
    const error = await settle(
      retry.execute(() => {
        n++
        throw Object.assign(new Error(`reset ${n}`), { code: 'ECONNRESET' })
      }),
    )
    expect((error as Error).message).toBe('reset 2')
    const last = await retry.execute(() => status(503))
    expect(last.status).toBe(503)
  })

  it('does not retry what is not retryable, non-idempotent work, or the caller’s abort', async () => {
    const retry = createRetry({ name: 'r', ...fast })
    let calls = 0
    await settle(
      retry.execute(() => {
        calls++
        throw new Error('bad request')
      }),
    )
    expect(calls).toBe(1)
    calls = 0
    await settle(
      retry.execute(
        () => {
          calls++
          throw reset()
        },
        { idempotent: false },
      ),
    )
    expect(calls).toBe(1)
    calls = 0
    const controller = new AbortController()
    const error = await settle(
      retry.execute(
        () => {
          calls++
          controller.abort(new Error('client gone'))
          throw reset()
        },
        { signal: controller.signal },
      ),
    )
    expect(calls).toBe(1)
    expect((error as Error).message).toBe('client gone')
  })

  it('never sleeps past the deadline: a backoff or Retry-After longer than the budget ends the call at once', async () => {
    const retry = createRetry({ name: 'r', baseMs: 5000, capMs: 5000, backoff: 'constant', budget: false })
    let calls = 0
    const started = performance.now()
    const error = await settle(
      retry.execute(
        () => {
          calls++
          throw reset()
        },
        { deadline: Date.now() + 200 },
      ),
    )
    expect(calls).toBe(1)
    expect((error as Error).message).toBe('read ECONNRESET')
    expect(performance.now() - started).toBeLessThan(150)
    const honours = createRetry({ name: 'r', ...fast, maxRetryAfterMs: 60_000 })
    calls = 0
    const answer = await honours.execute(
      () => {
        calls++
        return status(503, { 'retry-after': '2' })
      },
      { deadline: Date.now() + 1000 },
    )
    expect(calls).toBe(1) // asked for 2 s, 1 s left: no retry
    expect(answer.status).toBe(503)
  })

  it('honours a short Retry-After instead of the backoff, capped by maxRetryAfterMs', async () => {
    const retry = createRetry({ name: 'r', baseMs: 1, capMs: 1, attempts: 2, budget: false, maxRetryAfterMs: 150 })
    const started = performance.now()
    let calls = 0
    await retry.execute(() => (++calls === 1 ? status(503, { 'retry-after': '30' }) : 'ok'))
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(145)
    expect(elapsed).toBeLessThan(1000)
  })

  it('a caller abort during the backoff ends the call at once with its reason', async () => {
    const retry = createRetry({ name: 'r', baseMs: 2000, capMs: 2000, backoff: 'constant', budget: false })
    const controller = new AbortController()
    const pending = settle(retry.execute(() => Promise.reject(reset()), { signal: controller.signal }))
    await new Promise((r) => setTimeout(r, 20))
    const started = performance.now()
    controller.abort(new Error('gone'))
    expect(((await pending) as Error).message).toBe('gone')
    expect(performance.now() - started).toBeLessThan(100)
  })

  it('stops when the budget says so', async () => {
    const budget = new RetryBudget({ ratio: 0, perSecond: 1 })
    const retry = createRetry({ name: 'r', baseMs: 1, capMs: 1, attempts: 3, budget })
    let calls = 0
    await settle(retry.execute(() => Promise.reject(Object.assign(reset(), { n: ++calls }))))
    expect(calls).toBe(2) // one floor token: one retry
    calls = 0
    await settle(retry.execute(() => Promise.reject(Object.assign(reset(), { n: ++calls }))))
    expect(calls).toBe(1)
  })

  it('rejects unknown and invalid options, naming them', () => {
    expect(() => createRetry({ name: 'r', atempts: 3 } as never)).toThrow(/did you mean "attempts"/)
    expect(() => createRetry({ name: 'r', attempts: 0 })).toThrow(/attempts/)
    expect(() => createRetry({ name: 'r', backoff: 'linear' as never })).toThrow(/backoff/)
    expect(() => createRetry({ name: 'r', baseMs: '1 sec' })).toThrow(/baseMs/)
    expect(() => dependency('d', { retry: { capMs: 1, baseMs: 10 } })).toThrow(/retry\.capMs/)
  })
})

describe('retry in dependency()', () => {
  it('the breaker counts attempts; a retry the open breaker rejects ends the call with CircuitOpenError', async () => {
    const d = dependency('d', {
      breaker: { consecutiveFailures: 2, openMs: 10_000 },
      retry: { attempts: 3, baseMs: 1, capMs: 1, budget: false },
    })
    let calls = 0
    const error = await settle(
      d.execute(() => {
        calls++
        throw reset()
      }),
    )
    expect(calls).toBe(2) // the second attempt opened the breaker; the third was not made
    expect(isCircuitOpenError(error)).toBe(true)
    expect(d.breaker?.state).toBe('open')
  })

  it('each attempt gets its own attempt timeout, and the attempt number reaches the work', async () => {
    const d = dependency('d', { attemptTimeoutMs: 30, retry: { attempts: 3, baseMs: 1, capMs: 1, budget: false } })
    const attempts: number[] = []
    const value = await d.execute(({ attempt, signal }) => {
      attempts.push(attempt)
      if (attempt < 3) return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
      return 'third'
    })
    expect(value).toBe('third')
    expect(attempts).toEqual([1, 2, 3])
  })

  it('fallback and stale-if-error are the outermost layers: a retried failure is answered stale, else fallback', async () => {
    const reasons: string[] = []
    const d = dependency('d', {
      retry: { attempts: 2, baseMs: 1, capMs: 1, budget: false },
      staleIfError: { maxStaleMs: 60_000 },
      fallback: {
        value: (reason: string) => {
          reasons.push(reason)
          return 'fallback'
        },
      },
    })
    expect(await d.run(() => 'fresh', { cacheKey: 'a' })).toEqual({ value: 'fresh', source: 'upstream', ageMs: 0 })
    await new Promise((r) => setTimeout(r, 10)) // the store write is not awaited by the call
    let attempts = 0
    const down = () => {
      attempts++
      return Promise.reject(reset())
    }
    const stale = await d.run(down, { cacheKey: 'a' })
    expect([stale.source, stale.value, attempts]).toEqual(['stale', 'fresh', 2])
    const none = await d.run(down, { cacheKey: 'b' })
    expect([none.source, none.value]).toEqual(['fallback', 'fallback'])
    expect(reasons).toEqual(['retries-exhausted'])
    expect(await d.execute(down, { cacheKey: 'b' })).toBe('fallback')
  })

  it('run() says the answer came from upstream', async () => {
    const d = dependency('d', { retry: {} })
    expect(await d.run(() => 42)).toEqual({ value: 42, source: 'upstream', ageMs: 0 })
    expect(await dependency('plain').run(() => 'x')).toEqual({ value: 'x', source: 'upstream', ageMs: 0 })
  })
})
