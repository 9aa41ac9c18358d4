// The one path from an error to its problem response (problemFor), and what an adapter's error path does with a
// request's own abort (errorResponse).

import { describe, expect, it } from 'vitest'
import { errorResponse } from '../src/adapter.js'
import {
  BreakwaterError,
  createTimeout,
  DeadlineExceededError,
  ErrorCode,
  MethodNotAllowedError,
  problemFor,
  RequestAbortedError,
  RequestContext,
  StoreError,
} from '../src/index.js'

describe('problemFor', () => {
  it('answers a Breakwater error with its status, code, message and Retry-After from retryAfterSeconds', () => {
    const error = new BreakwaterError(ErrorCode.Overloaded, 'pricing is saturated', {
      status: 503,
      retryAfterSeconds: 2.2,
    })
    expect(error.retryAfterSeconds).toBe(3) // whole seconds, rounded up
    expect(problemFor(error)).toEqual({
      action: 'reject',
      status: 503,
      headers: [
        ['Retry-After', '3'],
        ['Content-Type', 'application/problem+json'],
      ],
      body: {
        // The type the load shedder's own BW_OVERLOADED carries: one type per code (PROBLEMS).
        type: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
        title: 'Service Unavailable',
        status: 503,
        code: 'BW_OVERLOADED',
        detail: 'pricing is saturated',
      },
    })
    expect(problemFor(new StoreError(ErrorCode.StoreUnavailable, 'claim', 'store claim failed'))?.headers).toEqual([
      ['Content-Type', 'application/problem+json'],
    ])
  })

  it('answers a MethodNotAllowedError 405 BW_METHOD_NOT_ALLOWED with Allow', () => {
    expect(problemFor(new MethodNotAllowedError(['GET', 'POST']))).toMatchObject({
      status: 405,
      headers: [
        ['Allow', 'GET, POST'],
        ['Content-Type', 'application/problem+json'],
      ],
      body: { code: 'BW_METHOD_NOT_ALLOWED', title: 'Method Not Allowed' },
    })
  })

  it('finds the Breakwater error in the cause chain (Node wraps a signal reason in an AbortError)', () => {
    const wrapped = new Error('The operation was aborted', { cause: new DeadlineExceededError('no budget') })
    expect(problemFor(wrapped)).toMatchObject({ status: 504, body: { code: ErrorCode.DeadlineExceeded } })
  })

  it('maps framework client errors by status: 413, 415, 405 with Allow, any other 4xx as BW_BAD_REQUEST', () => {
    const parse = Object.assign(new Error('Unexpected token'), { status: 400, type: 'entity.parse.failed' })
    expect(problemFor(parse)).toMatchObject({
      status: 400,
      body: { code: 'BW_BAD_REQUEST', detail: 'Unexpected token' },
    })
    const fastify = Object.assign(new Error('Request body is too large'), {
      statusCode: 413,
      code: 'FST_ERR_CTP_BODY_TOO_LARGE',
    })
    expect(problemFor(fastify)).toMatchObject({ status: 413, body: { code: 'BW_PAYLOAD_TOO_LARGE' } })
    expect(problemFor(Object.assign(new Error('x'), { statusCode: 415 }))?.body.code).toBe('BW_UNSUPPORTED_MEDIA_TYPE')
    const allow = problemFor(
      Object.assign(new Error('no'), { status: 405, headers: { Allow: 'POST', 'X-Other': 'y' } }),
    )
    expect(allow?.headers).toEqual([
      ['Allow', 'POST'],
      ['Content-Type', 'application/problem+json'],
    ])
    const hidden = problemFor(Object.assign(new Error('secret'), { status: 400, expose: false }))
    expect(hidden?.body.detail).toBeUndefined()
    expect(problemFor(Object.assign(new Error('x'.repeat(500)), { status: 400 }))?.body.detail).toHaveLength(200)
  })

  it('leaves 5xx and unknown errors to the framework (undefined), and never carries a stack', () => {
    expect(problemFor(new Error('boom'))).toBeUndefined()
    expect(problemFor(Object.assign(new Error('db down'), { status: 500 }))).toBeUndefined()
    expect(problemFor('a string')).toBeUndefined()
    expect(problemFor(new RequestAbortedError('client-gone', 'gone'))).toBeUndefined()
    const answer = JSON.stringify(problemFor(Object.assign(new Error('bad'), { status: 400 })))
    expect(answer).not.toMatch(/stack|\bat /)
  })
})

describe('errorResponse', () => {
  it("is silent once the deadline's answer went out, and answers the request's own timeout 503 when it did not", async () => {
    const timeout = createTimeout({ timeoutMs: 1 })
    const context = new RequestContext()
    timeout.arm(context, undefined)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(context.abortKind).toBe('timeout')
    const echo = new Error('The operation was aborted', { cause: context.abortReason })
    expect(errorResponse(echo, context, true, timeout, true)).toBe('answered')
    expect(errorResponse(new Error('late failure'), context, true, timeout, true)).toBe('answered')
    expect(errorResponse(echo, context, false, timeout, true)).toMatchObject({
      status: 503,
      body: { code: 'BW_TIMEOUT' },
    })
    // No abort on the context: an answered response leaves the error to the framework.
    expect(errorResponse(new Error('boom'), new RequestContext(), true, undefined, true)).toBeUndefined()
    context.dispose()
  })

  it('answers a DeadlineExceededError 504 and, with problems, framework client errors', () => {
    expect(errorResponse(new DeadlineExceededError('x'), undefined, false, undefined, false)).toMatchObject({
      status: 504,
    })
    const parse = Object.assign(new Error('bad'), { status: 400 })
    expect(errorResponse(parse, undefined, false, undefined, false)).toBeUndefined()
    expect(errorResponse(parse, undefined, false, undefined, true)).toMatchObject({ status: 400 })
  })
})
