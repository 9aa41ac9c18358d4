// Outbound errors through the adapters, proved alike for Express, Fastify and Koa over real sockets: a handler
// that lets CircuitOpenError, BulkheadFullError, AttemptTimeoutError or DeadlineExceededError escape is answered
// with problem+json and a stable code through the framework's own reply path; other errors are left alone.

import { ErrorCode } from '@breakwater/core'
import { afterEach, describe, expect, it } from 'vitest'
import { FRAMEWORKS } from './apps.js'
import { type OutboundApp, startOutboundApp } from './outbound-apps.js'
import { headerLines, rawRequest } from './support.js'

describe.each(FRAMEWORKS)('%s outbound errors', (framework) => {
  let app: OutboundApp | undefined
  afterEach(async () => {
    await app?.close()
    app = undefined
  })

  it.each([
    ['/api/circuit', 503, ErrorCode.CircuitOpen, ['5']],
    ['/api/bulkhead', 503, ErrorCode.BulkheadFull, ['2']],
    ['/api/attempt-timeout', 504, ErrorCode.AttemptTimeout, []],
    ['/api/no-budget', 504, ErrorCode.DeadlineExceeded, []],
  ] as const)('%s answers %i problem+json with code %s and Retry-After %j', async (path, status, code, retryAfter) => {
    app = await startOutboundApp(framework)
    const response = await rawRequest(`${app.url}${path}`)
    expect(response.status).toBe(status)
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/)
    const body = JSON.parse(response.body)
    expect(body).toMatchObject({ type: 'about:blank', status, code })
    expect(typeof body.detail).toBe('string')
    expect(headerLines(response, 'retry-after')).toEqual(retryAfter)
    expect(app.errors).toEqual([])
  })

  it('an error that is not Breakwater’s still reaches the framework’s own error handler', async () => {
    app = await startOutboundApp(framework)
    const response = await rawRequest(`${app.url}/api/plain`)
    expect(response.status).toBe(502)
    expect(app.errors).toHaveLength(1)
  })
})
