import { describe, expect, it } from 'vitest'
import { createRateLimiter } from '../src/index.js'

describe('createRateLimiter', () => {
  it('allows `limit` requests then rejects with 429', () => {
    const limiter = createRateLimiter({ limit: 2, windowMs: '1h' })
    const view = { method: 'GET', path: '/', ip: '192.0.2.1', header: () => undefined, signal: AbortSignal.abort() }
    expect(limiter.check(view)).toMatchObject({ action: 'continue' })
    expect(limiter.check(view)).toMatchObject({ action: 'continue' })
    expect(limiter.check(view)).toMatchObject({ action: 'reject', status: 429 })
  })
})
