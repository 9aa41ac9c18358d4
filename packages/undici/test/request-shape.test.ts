import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import {
  BUFFERABLE,
  bodyKind,
  bufferBody,
  headerValue,
  idempotentRequest,
  ONE_SHOT,
  REPLAYABLE,
  resumeBody,
  withHeaders,
} from '../src/request-shape.js'

describe('idempotentRequest', () => {
  it('GET/HEAD/OPTIONS/PUT/DELETE are; POST and PATCH only with an Idempotency-Key', () => {
    for (const method of ['GET', 'head', 'OPTIONS', 'PUT', 'DELETE']) expect(idempotentRequest(method, null)).toBe(true)
    expect(idempotentRequest('POST', { 'content-type': 'application/json' })).toBe(false)
    expect(idempotentRequest('PATCH', null)).toBe(false)
    expect(idempotentRequest('POST', { 'Idempotency-Key': 'k' })).toBe(true)
    expect(idempotentRequest('POST', ['idempotency-key', 'k'])).toBe(true)
    expect(idempotentRequest('POST', new Map([['IDEMPOTENCY-KEY', 'k']]))).toBe(true)
  })
})

describe('headers in undici’s shapes', () => {
  it('reads a record (any case), a flat array and pairs', () => {
    expect(headerValue({ 'Content-Length': '12' }, 'content-length')).toBe('12')
    expect(headerValue({ a: ['1', '2'] }, 'a')).toBe('1')
    expect(headerValue(['A', '1', 'b', '2'], 'b')).toBe('2')
    expect(headerValue([['x', 'y']] as never, 'x')).toBe('y')
    expect(headerValue(undefined, 'x')).toBeUndefined()
  })

  it('adds headers in the same shape, leaving ones the caller set', () => {
    expect(withHeaders({ a: '1' }, { 'Request-Timeout-Ms': '5' })).toEqual({ a: '1', 'Request-Timeout-Ms': '5' })
    expect(withHeaders(['a', '1'], { b: '2' })).toEqual(['a', '1', 'b', '2'])
    expect(withHeaders(new Map([['a', '1']]), { b: '2' })).toEqual([
      ['a', '1'],
      ['b', '2'],
    ])
    expect(withHeaders(null, { b: '2' })).toEqual({ b: '2' })
    const own = { 'request-timeout-ms': '9' }
    expect(withHeaders(own, { 'Request-Timeout-Ms': '5' })).toBe(own)
  })
})

describe('bodyKind', () => {
  it('strings, bytes and Blobs replay; streams of unknown length are one-shot; declared small iterables buffer', () => {
    expect(bodyKind(null, null, 10)).toBe(REPLAYABLE)
    expect(bodyKind('x', null, 10)).toBe(REPLAYABLE)
    expect(bodyKind(Buffer.from('x'), null, 10)).toBe(REPLAYABLE)
    expect(bodyKind(new Blob(['x']), null, 10)).toBe(REPLAYABLE)
    expect(bodyKind(Readable.from(['x']), null, 10)).toBe(ONE_SHOT)
    expect(bodyKind(Readable.from(['x']), { 'content-length': '1' }, 10)).toBe(BUFFERABLE)
    expect(bodyKind(Readable.from(['x']), { 'content-length': '11' }, 10)).toBe(ONE_SHOT)
    expect(bodyKind(Readable.from(['x']), { 'content-length': 'junk' }, 10)).toBe(ONE_SHOT)
    expect(bodyKind(new ReadableStream(), { 'content-length': '1' }, 10)).toBe(BUFFERABLE)
  })

  it('buffers a body within its cap, and hands back a longer one intact to be sent once', async () => {
    expect(await bufferBody(Readable.from([Buffer.from('ab'), Buffer.from('c')]), 3)).toEqual({
      complete: Buffer.from('abc'),
    })
    const over = await bufferBody(Readable.from([Buffer.from('ab'), Buffer.from('cd'), Buffer.from('ef')]), 3)
    expect('partial' in over).toBe(true)
    if (!('partial' in over)) return
    const sent: Buffer[] = []
    for await (const chunk of resumeBody(over.partial, over.rest)) sent.push(chunk)
    expect(Buffer.concat(sent).toString()).toBe('abcdef')
  })
})
