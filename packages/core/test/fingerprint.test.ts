// The payload fingerprint against hostile and lossy bodies: deep nesting is bounded (a 413, never a stack
// overflow), and a raw body is fingerprinted as written, so numbers JSON.parse cannot tell apart still differ.

import { describe, expect, it } from 'vitest'
import {
  canonicalJson,
  createIdempotency,
  ErrorCode,
  type IdempotencyDecision,
  type IdempotencyOptions,
  isPromiseLike,
  type RequestView,
} from '../src/index.js'

function keyed(key: string): RequestView {
  const headers: Record<string, string> = { 'idempotency-key': key }
  return {
    method: 'POST',
    path: '/orders',
    ip: '192.0.2.1',
    header: (name) => headers[name.toLowerCase()],
    signal: new AbortController().signal,
  }
}

const policy = (options: IdempotencyOptions = {}) => createIdempotency({ scope: () => 'user-1', ...options })

function sync(decision: ReturnType<ReturnType<typeof createIdempotency>['check']>): IdempotencyDecision {
  if (isPromiseLike(decision)) throw new Error('expected a synchronous decision')
  return decision
}

/** Run the first request with `key` to completion, then answer what a retry with `raw` / `body` gets. */
function retryAfterFirst(
  p: ReturnType<typeof policy>,
  key: string,
  first: string,
  retry: string,
  raw: boolean,
): IdempotencyDecision {
  const decision = sync(p.check(keyed(key), JSON.parse(first), raw ? first : undefined))
  if (decision.action !== 'execute') throw new Error(`expected execute, got ${decision.action}`)
  decision.ticket.finish(201, () => undefined, '{"id":1}')
  return sync(p.check(keyed(key), JSON.parse(retry), raw ? retry : undefined))
}

const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

describe('idempotency fingerprint', () => {
  it('answers a body of 20,000 nested arrays with 413 BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX, parsed or raw', () => {
    const text = nested(20_000)
    const p = policy()
    for (const raw of [undefined, text]) {
      const decision = sync(p.check(keyed(`deep-${raw === undefined}`), JSON.parse(text), raw))
      expect(decision).toMatchObject({
        action: 'reject',
        status: 413,
        body: { status: 413, code: ErrorCode.IdempotencyPayloadTooComplex },
      })
    }
    // canonicalJson itself is iterative: any depth, no RangeError.
    expect(canonicalJson(JSON.parse(text))).toBe(text)
  })

  it('accepts nesting up to maxDepth (default 64) and rejects one level more', () => {
    const p = policy()
    expect(sync(p.check(keyed('d64'), JSON.parse(nested(64)), nested(64))).action).toBe('execute')
    expect(sync(p.check(keyed('d65'), JSON.parse(nested(65)), nested(65))).action).toBe('reject')
    expect(sync(p.check(keyed('d65p'), JSON.parse(nested(65)))).action).toBe('reject')
    const shallow = policy({ fingerprint: { maxDepth: 2 } })
    expect(sync(shallow.check(keyed('s'), { a: { b: 1 } })).action).toBe('execute')
    expect(sync(shallow.check(keyed('t'), { a: { b: [1] } })).action).toBe('reject')
  })

  it('bounds the size fingerprinted by maxBytes, raw or parsed', () => {
    const p = policy({ fingerprint: { maxBytes: 100 } })
    const big = JSON.stringify({ pad: 'x'.repeat(200) })
    expect(sync(p.check(keyed('big-raw'), JSON.parse(big), big))).toMatchObject({ status: 413 })
    expect(sync(p.check(keyed('big-parsed'), JSON.parse(big)))).toMatchObject({ status: 413 })
    const wide = JSON.stringify(Array.from({ length: 100 }, (_, i) => i))
    expect(sync(p.check(keyed('wide'), JSON.parse(wide)))).toMatchObject({ status: 413 })
    expect(sync(p.check(keyed('small'), { pad: 'x' }, '{"pad":"x"}')).action).toBe('execute')
  })

  it('tells apart integers above 2^53 that JSON.parse merges, when the raw body is given (422, not a replay)', () => {
    const first = '{"amount":9007199254740993}'
    const retry = '{"amount":9007199254740992}'
    expect(JSON.parse(first)).toEqual(JSON.parse(retry)) // the loss the raw body avoids
    expect(retryAfterFirst(policy(), 'big-int', first, retry, true)).toMatchObject({
      action: 'reject',
      status: 422,
      body: { code: ErrorCode.IdempotencyMismatch },
    })
    const decimals = retryAfterFirst(policy(), 'decimal', '{"x":0.30000000000000001}', '{"x":0.3}', true)
    expect(decimals).toMatchObject({ status: 422 })
  })

  it('keeps raw fingerprints canonical: key order, whitespace and string escapes do not matter', () => {
    const replayed = retryAfterFirst(
      policy(),
      'order',
      '{"b":[1,{"d":"\\u0041","c":2}],"a":null}',
      ' { "a" : null , "b" : [ 1 , { "c" : 2 , "d" : "A" } ] } ',
      true,
    )
    expect(replayed.action).toBe('replay')
    // Duplicate keys: the last one wins, as in JSON.parse.
    expect(retryAfterFirst(policy(), 'dup', '{"a":1,"a":2}', '{"a":2}', true).action).toBe('replay')
    expect(retryAfterFirst(policy(), 'dup2', '{"a":1,"a":2}', '{"a":1}', true).action).toBe('reject')
  })

  it('applies include / exclude to raw bodies, and fingerprints non-JSON raw bodies byte for byte', () => {
    const ex = policy({ fingerprint: { exclude: ['sentAt'] } })
    expect(retryAfterFirst(ex, 'ex', '{"a":1,"sentAt":1}', '{"sentAt":2,"a":1}', true).action).toBe('replay')
    expect(retryAfterFirst(ex, 'ex2', '{"a":1,"sentAt":1}', '{"sentAt":1,"a":2}', true).action).toBe('reject')
    const p = policy()
    const form = sync(p.check(keyed('form'), { a: '1' }, 'a=1&b=2'))
    if (form.action !== 'execute') throw new Error('expected execute')
    form.ticket.finish(201, () => undefined, 'ok')
    expect(sync(p.check(keyed('form'), { a: '1' }, 'a=1&b=3')).action).toBe('reject')
    expect(sync(p.check(keyed('form'), { a: '1' }, Buffer.from('a=1&b=2'))).action).toBe('replay')
  })

  it('rejects invalid bounds at construction, naming the option', () => {
    expect(() => policy({ fingerprint: { maxDepth: 0 } })).toThrow(/fingerprint\.maxDepth/)
    expect(() => policy({ fingerprint: { maxBytes: -1 } })).toThrow(/fingerprint\.maxBytes/)
  })
})
