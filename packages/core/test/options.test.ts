// Option checking shared by every factory: one duration grammar, and unknown keys reported by name with the
// closest known option.

import {
  createGracefulShutdown,
  createHealth,
  createIdempotency,
  createLoadShedder,
  createRateLimiter,
  createTimeout,
  eventLoopDelayCheck,
  heapCheck,
  isInvalidOptionError,
  MemoryIdempotencyStore,
  MemoryRateLimitStore,
} from '@breakwater/core'
import { describe, expect, it } from 'vitest'

/** The error a call throws (fails the test when it does not throw). */
function thrown(fn: () => unknown): Error & { code?: string; option?: string } {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected an error')
}

describe('durations: one grammar, a number and one unit of ms, s, m, h, d', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['1m', 60_000],
    ['1.5h', 5_400_000],
    ['1d', 86_400_000],
    [250, 250],
  ])('accepts %j as %d ms', (timeoutMs, ms) => {
    expect(createTimeout({ timeoutMs }).timeoutMs).toBe(ms)
  })

  it.each([
    ['10 mins', '10m'],
    ['2 hours', '2h'],
    ['1 minute', '1m'],
    ['30 seconds', '30s'],
    ['3 days', '3d'],
    ['250 msec', '250ms'],
    ['500', '500ms'],
  ])('rejects %j and says to write %j', (windowMs, suggestion) => {
    const error = thrown(() => createRateLimiter({ limit: 1, windowMs }))
    expect(isInvalidOptionError(error)).toBe(true)
    expect(error.option).toBe('windowMs')
    expect(error.message).toContain(`(write "${suggestion}")`)
  })

  it.each(['10 S', '1w', 'soon', '-1s', '0s'])('rejects %j with the grammar in the message', (windowMs) => {
    const error = thrown(() => createRateLimiter({ limit: 1, windowMs }))
    expect(error.message).toMatch(/a number and one unit of ms, s, m, h, d/)
  })
})

/** A server that is never started: only the options are under test. */
const closer = { close: async () => {}, closeIdleConnections: () => {}, closeAllConnections: () => {} }

describe('unknown option keys', () => {
  it('name the mistyped key and suggest the closest known option', () => {
    const error = thrown(() => createRateLimiter({ limt: 5, windowMs: '1s' } as never))
    expect(isInvalidOptionError(error)).toBe(true)
    expect(error.code).toBe('BW_INVALID_OPTION')
    expect(error.option).toBe('limt')
    expect(error.message).toMatch(/^Unknown option "limt" of rateLimit \(did you mean "limit"\?\); known options: /)
  })

  it('list the known options without a guess when nothing is close', () => {
    const error = thrown(() => createTimeout({ timeoutMs: 100, zzzzzzzz: 1 } as never))
    expect(error.message).toMatch(/^Unknown option "zzzzzzzz" of timeout; known options: .*timeoutMs/)
  })

  it('check the fields of each rule in `rules`', () => {
    const error = thrown(() => createRateLimiter({ rules: [{ limit: 1, windowMs: '1s', brust: 2 }] } as never))
    expect(error.option).toBe('brust')
    expect(error.message).toContain('of rules[0] (did you mean "burst"?)')
  })

  it.each([
    ['idempotency', () => createIdempotency({ requierd: true } as never), 'required'],
    ['timeout', () => createTimeout({ timeout: 100 } as never), 'timeoutMs'],
    ['loadShedding', () => createLoadShedder({ limits: 10 } as never), 'limit'],
    ['health', () => createHealth({ check: [] } as never), 'checks'],
    ['gracefulShutdown', () => createGracefulShutdown(closer, { timeout: 1 } as never), 'timeoutMs'],
    ['MemoryRateLimitStore', () => new MemoryRateLimitStore({ maxkeys: 10 } as never), 'maxKeys'],
    ['MemoryIdempotencyStore', () => new MemoryIdempotencyStore({ maxByte: 10 } as never), 'maxBytes'],
    ['eventLoopDelayCheck', () => eventLoopDelayCheck({ warn: 10 } as never), 'warnMs'],
    ['heapCheck', () => heapCheck({ failratio: 0.9 } as never), 'failRatio'],
  ])('are errors of %s too', (what, create, suggestion) => {
    const error = thrown(create)
    expect(error.code).toBe('BW_INVALID_OPTION')
    expect(error.message).toContain(`of ${what} (did you mean "${suggestion}"?)`)
  })
})
