// The one registry of problem types (PROBLEMS): every error code has an entry, problemFor answers every error
// class from it, and each policy's own rejections carry the same type, title and status for their code.

import { describe, expect, it } from 'vitest'
import {
  AttemptTimeoutError,
  BreakwaterError,
  BulkheadFullError,
  CircuitOpenError,
  createIdempotency,
  createLoadShedder,
  createRateLimiter,
  createTimeout,
  DeadlineExceededError,
  ErrorCode,
  type IdempotencyStore,
  InvalidOptionError,
  isPromiseLike,
  type MaybePromise,
  MethodNotAllowedError,
  PROBLEMS,
  type ProblemEntry,
  ProblemType,
  problemFor,
  type RejectDecision,
  RequestAbortedError,
  type RequestView,
  StoreError,
} from '../src/index.js'
import { view } from './helpers.js'

const codes = Object.values(ErrorCode)

/** The decision's status and the body's type and title are the registry's entry for the body's code. */
function expectRegistered(decision: unknown, code: ErrorCode): void {
  const { status, body } = decision as RejectDecision
  expect(body.code).toBe(code)
  expect({ type: body.type, title: body.title, status }).toEqual(PROBLEMS[code])
  expect(body.status).toBe(status)
}

describe('PROBLEMS', () => {
  it('has exactly one entry per ErrorCode, each a type URI, a title and a 4xx/5xx status or none', () => {
    expect(Object.keys(PROBLEMS).sort()).toEqual([...codes].sort())
    for (const code of codes) {
      const entry: ProblemEntry = PROBLEMS[code]
      expect(entry.type).toMatch(/^(about:blank|https:\/\/iana\.org\/assignments\/http-problem-types#[a-z-]+)$/)
      expect(entry.title).not.toBe('')
      if (entry.status !== undefined) expect(entry.status >= 400 && entry.status <= 599).toBe(true)
    }
    expect(Object.isFrozen(PROBLEMS)).toBe(true)
  })
})

describe('problemFor answers every error class from the registry', () => {
  it.each([
    [
      'StoreError (unavailable)',
      new StoreError(ErrorCode.StoreUnavailable, 'claim', 'down'),
      ErrorCode.StoreUnavailable,
    ],
    ['StoreError (timeout)', new StoreError(ErrorCode.StoreTimeout, 'claim', 'slow'), ErrorCode.StoreTimeout],
    ['RequestAbortedError (timeout)', new RequestAbortedError('timeout', 'late'), ErrorCode.Timeout],
    ['RequestAbortedError (shutdown)', new RequestAbortedError('shutdown', 'bye'), ErrorCode.Shutdown],
    ['DeadlineExceededError', new DeadlineExceededError('no budget'), ErrorCode.DeadlineExceeded],
    ['MethodNotAllowedError', new MethodNotAllowedError(['POST']), ErrorCode.MethodNotAllowed],
    ['CircuitOpenError', new CircuitOpenError('inventory', 'open', 1), ErrorCode.CircuitOpen],
    ['BulkheadFullError', new BulkheadFullError('inventory', 'full', 1), ErrorCode.BulkheadFull],
    ['AttemptTimeoutError', new AttemptTimeoutError('inventory', 300), ErrorCode.AttemptTimeout],
  ])('%s', (_name, error, code) => {
    expectRegistered(problemFor(error), code)
  })

  it('a BreakwaterError of every answered code, raised with its registered status', () => {
    for (const code of codes) {
      const { status } = PROBLEMS[code]
      if (status === undefined) continue
      expectRegistered(problemFor(new BreakwaterError(code, 'why', { status })), code)
    }
  })

  it('codes with no status are never answered: the error goes to the framework', () => {
    const unanswered = codes.filter((code) => PROBLEMS[code].status === undefined)
    expect(unanswered.sort()).toEqual(
      ['BW_CLIENT_GONE', 'BW_HEALTH_CHECK_TIMEOUT', 'BW_INVALID_OPTION', 'BW_SHUTDOWN_HOOK_TIMEOUT'].sort(),
    )
    for (const code of unanswered) expect(problemFor(new BreakwaterError(code, 'why'))).toBeUndefined()
    expect(problemFor(new InvalidOptionError('limit', -1, 'a positive integer'))).toBeUndefined()
    expect(problemFor(new RequestAbortedError('client-gone', 'left'))).toBeUndefined()
  })

  it('framework client errors: 400, 413, 415 and 405 as registered; another 4xx keeps its status and reason phrase', () => {
    const cases = [
      [400, ErrorCode.BadRequest],
      [413, ErrorCode.PayloadTooLarge],
      [415, ErrorCode.UnsupportedMediaType],
      [405, ErrorCode.MethodNotAllowed],
    ] as const
    for (const [status, code] of cases) expectRegistered(problemFor(Object.assign(new Error('x'), { status })), code)
    expect(problemFor(Object.assign(new Error('x'), { statusCode: 411 }))?.body).toMatchObject({
      type: 'about:blank',
      title: 'Length Required',
      status: 411,
      code: ErrorCode.BadRequest,
    })
  })
})

describe("each policy's own rejections carry the registry's type, title and status", () => {
  const post = (headers: Record<string, string>): RequestView => ({
    method: 'POST',
    path: '/orders',
    ip: '192.0.2.1',
    header: (name) => headers[name.toLowerCase()],
    signal: new AbortController().signal,
  })
  const sync = <T>(value: MaybePromise<T>): T => {
    if (isPromiseLike(value)) throw new Error('expected a synchronous decision')
    return value
  }

  it('rate limiting: 429 quota-exceeded', () => {
    const limiter = createRateLimiter({ limit: 1, windowMs: '1m' })
    sync(limiter.check(view()))
    expectRegistered(sync(limiter.check(view())), ErrorCode.RateLimited)
    expect(PROBLEMS[ErrorCode.RateLimited].type).toBe(ProblemType.QuotaExceeded)
  })

  it('rate limiting fail-closed: 503 BW_STORE_UNAVAILABLE as registered, with Retry-After', async () => {
    const down = (): Promise<never> => Promise.reject(new Error('store down'))
    const limiter = createRateLimiter({
      limit: 1,
      windowMs: '1m',
      store: { consume: down, peek: down, reset: () => undefined },
      onStoreError: 'fail-closed',
    })
    const decision = await limiter.check(view())
    expectRegistered(decision, ErrorCode.StoreUnavailable)
    expect((decision as RejectDecision).headers).toContainEqual(['Retry-After', '1'])
  })

  it('load shedding: 503 temporary-reduced-capacity', () => {
    const shedder = createLoadShedder({ limit: 1 })
    try {
      shedder.acquire()
      expectRegistered(shedder.acquire(), ErrorCode.Overloaded)
      expect(PROBLEMS[ErrorCode.Overloaded].type).toBe(ProblemType.TemporaryReducedCapacity)
    } finally {
      shedder.close()
    }
  })

  it('timeouts: 503 for the request deadline and shutdown, 504 for an upstream deadline', () => {
    const timeout = createTimeout({ timeoutMs: 1_000 })
    expectRegistered(timeout.timedOut, ErrorCode.Timeout)
    expectRegistered(timeout.decisionFor(new RequestAbortedError('shutdown', 'bye')), ErrorCode.Shutdown)
    expectRegistered(timeout.decisionFor(new DeadlineExceededError('upstream')), ErrorCode.DeadlineExceeded)
  })

  it('idempotency: 400 missing and invalid key, 409 in progress, 422 mismatch, 413 too complex, 503 store down', async () => {
    const policy = createIdempotency({ scope: () => 'user-1', required: true })
    expectRegistered(sync(policy.check(post({}), {})), ErrorCode.IdempotencyKeyMissing)
    expectRegistered(sync(policy.check(post({ 'idempotency-key': '"a", "b"' }), {})), ErrorCode.IdempotencyKeyInvalid)
    const first = sync(policy.check(post({ 'idempotency-key': 'k' }), { amount: 5 }))
    expect(first.action).toBe('execute')
    expectRegistered(
      sync(policy.check(post({ 'idempotency-key': 'k' }), { amount: 5 })),
      ErrorCode.IdempotencyInProgress,
    )
    expectRegistered(sync(policy.check(post({ 'idempotency-key': 'k' }), { amount: 6 })), ErrorCode.IdempotencyMismatch)
    const deep = `${'['.repeat(100)}${']'.repeat(100)}`
    expectRegistered(
      sync(policy.check(post({ 'idempotency-key': 'deep' }), JSON.parse(deep), deep)),
      ErrorCode.IdempotencyPayloadTooComplex,
    )
    const broken: IdempotencyStore = {
      claim: () => Promise.reject(new Error('down')),
      complete: () => Promise.resolve(false),
      release: () => Promise.resolve(false),
      get: () => Promise.resolve(undefined),
    }
    const down = createIdempotency({ scope: () => 'user-1', store: broken })
    expectRegistered(await down.check(post({ 'idempotency-key': 'k' }), {}), ErrorCode.StoreUnavailable)
  })
})
