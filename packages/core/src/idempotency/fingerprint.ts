// The request fingerprint stored with a record: a digest of the body, so the same key reused with a different
// payload is caught (422) instead of silently answered with another request's response.
// Two rules keep it safe against hostile bodies: it is lossless where the raw bytes are at hand (JSON.parse maps
// 9007199254740993 and 9007199254740992 to one number, so a digest of the parsed value would call them equal), and
// it is computed iteratively within a depth and size bound (20,000 nested arrays must not overflow the stack).

import { createHash } from 'node:crypto'
import { InvalidOptionError } from '../errors.js'
import { positiveInteger } from '../internal/validate.js'
import type { RequestView } from '../request-view.js'

/** How the body is fingerprinted; see {@link IdempotencyOptions.fingerprint}. */
export interface FingerprintOptions {
  /**
   * Ignore object key order and insignificant whitespace, so `{a,b}` and `{b,a}` match. Numbers are compared as
   * written when the adapter has the raw body (Fastify always, Koa with a body parser that keeps `rawBody`,
   * Express with `express.json({ verify: keepRawBody })`). Default `true`.
   */
  canonical?: boolean
  /** Only these top-level fields of an object body count (e.g. `['amount', 'currency']`). Default: all. */
  include?: readonly string[]
  /** These top-level fields of an object body are ignored (e.g. a client timestamp). Default: none. */
  exclude?: readonly string[]
  /**
   * Deepest nesting of arrays and objects fingerprinted. A deeper body is answered 413 problem+json
   * (`BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX`) without running the handler. Default `64`.
   */
  maxDepth?: number
  /**
   * Largest body fingerprinted, in bytes of the raw body (or characters of the canonical form of a parsed one).
   * A larger body is answered 413 problem+json (`BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX`). Default `1_048_576` (1 MiB).
   */
  maxBytes?: number
}

/**
 * Computes the fingerprint of one request from its parsed body and, when the adapter has it, the raw body.
 *
 * @example
 * const byOrder: Fingerprinter = (_request, body) => String((body as { orderId?: string })?.orderId ?? '')
 */
export type Fingerprinter = (request: RequestView, body: unknown, rawBody?: string | Uint8Array) => string

/** What the policy computes: a fingerprint, or {@link OVER_LIMIT} when the body is deeper or larger than allowed. */
export type InternalFingerprinter = (
  request: RequestView,
  body: unknown,
  rawBody: string | Uint8Array | undefined,
) => string | typeof OVER_LIMIT

/** The body is nested deeper or larger than the fingerprint's bounds. */
export const OVER_LIMIT = Symbol('fingerprint.overLimit')

const DEFAULT_MAX_DEPTH = 64
const DEFAULT_MAX_BYTES = 1024 * 1024
const EMPTY = digest('')

/**
 * Build the fingerprint function: a custom function is used as given, `false` fingerprints nothing (every
 * payload matches), and options pick canonical JSON, the fields that count and the bounds.
 *
 * @example
 * const fingerprint = fingerprinter({ exclude: ['sentAt'] })
 * fingerprint(view, { amount: 5, sentAt: 1 }, undefined) === fingerprint(view, { sentAt: 2, amount: 5 }, undefined)
 */
export function fingerprinter(option: FingerprintOptions | Fingerprinter | false | undefined): InternalFingerprinter {
  if (option === false) return () => ''
  if (typeof option === 'function') {
    return (request, body, rawBody) => {
      const value = option(request, body, rawBody)
      if (typeof value !== 'string') throw new InvalidOptionError('fingerprint()', value, 'a string')
      return value
    }
  }
  if (option !== undefined && (typeof option !== 'object' || option === null)) {
    throw new InvalidOptionError('fingerprint', option, 'an object, a function or false')
  }
  const sort = option?.canonical ?? true
  const include = fieldSet('fingerprint.include', option?.include)
  const exclude = fieldSet('fingerprint.exclude', option?.exclude)
  const keep = include || exclude ? (key: string) => (!include || include.has(key)) && !exclude?.has(key) : undefined
  const maxDepth = positiveInteger('fingerprint.maxDepth', option?.maxDepth ?? DEFAULT_MAX_DEPTH)
  const maxBytes = positiveInteger('fingerprint.maxBytes', option?.maxBytes ?? DEFAULT_MAX_BYTES)
  return (_request, body, rawBody) => {
    if (rawBody !== undefined && rawBody.length > 0) {
      if (rawBody.length > maxBytes) return OVER_LIMIT
      const text = typeof rawBody === 'string' ? rawBody : Buffer.from(rawBody).toString('utf8')
      if (!looksLikeJson(text)) return digest(rawBody) // a form, text or bytes: exactly what was sent
      if (!sort && keep === undefined) return digest(rawBody)
      const canonical = canonicalJsonText(text, sort, keep, maxDepth)
      if (canonical === OVER_LIMIT) return OVER_LIMIT
      return digest(canonical ?? rawBody) // not JSON after all: the bytes as sent
    }
    if (body === undefined || body === null || body === '') return EMPTY
    if (typeof body === 'string') return body.length > maxBytes ? OVER_LIMIT : digest(body)
    if (body instanceof Uint8Array) return body.length > maxBytes ? OVER_LIMIT : digest(body)
    if (typeof body !== 'object') return digest(String(body))
    const canonical = canonicalValue(body, sort, keep, maxDepth, maxBytes)
    return canonical === OVER_LIMIT ? OVER_LIMIT : digest(canonical)
  }
}

/**
 * JSON with object keys in sorted order at every depth, so key order never changes the digest. Iterative: any
 * depth is safe (the policy itself bounds it, see {@link FingerprintOptions.maxDepth}).
 *
 * @example
 * canonicalJson({ b: 1, a: [true, { d: 1, c: 2 }] }) // '{"a":[true,{"c":2,"d":1}],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  return canonicalValue(value, true, undefined, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY) as string
}

/** One open array or object of the value walk: its members and where the walk is in it. */
interface ValueFrame {
  readonly items: readonly unknown[] // array elements, or the object's keys
  readonly record: Record<string, unknown> | undefined // the object, when this frame is one
  readonly parts: string[]
  /** What precedes this container in its parent: `"key":` or nothing. */
  readonly prefix: string
  index: number
}

/** JSON of a parsed value (`toJSON` honoured, as JSON.stringify does), keys sorted when `sort`; bounded. */
function canonicalValue(
  root: unknown,
  sort: boolean,
  keep: ((key: string) => boolean) | undefined,
  maxDepth: number,
  maxBytes: number,
): string | typeof OVER_LIMIT {
  let size = 0
  const stack: ValueFrame[] = []
  /** Opens `value` if it is a container (returns undefined), else returns its JSON text. */
  const enter = (input: unknown, prefix: string, top: boolean): string | undefined | typeof OVER_LIMIT => {
    let value = input
    if (value !== null && typeof value === 'object') {
      const toJSON = (value as { toJSON?: () => unknown }).toJSON
      if (typeof toJSON === 'function') value = toJSON.call(value)
    }
    if (value === null || typeof value !== 'object') {
      const text = typeof value === 'bigint' ? value.toString() : (JSON.stringify(value) ?? 'null')
      size += text.length
      return text
    }
    if (stack.length >= maxDepth) return OVER_LIMIT
    if (Array.isArray(value)) {
      stack.push({ items: value, record: undefined, parts: [], prefix, index: 0 })
    } else {
      const record = value as Record<string, unknown>
      let keys = Object.keys(record)
      if (top && keep !== undefined) keys = keys.filter(keep)
      if (sort) keys.sort()
      stack.push({ items: keys, record, parts: [], prefix, index: 0 })
    }
    return undefined
  }
  const first = enter(root, '', true)
  if (first !== undefined) return first
  for (;;) {
    const frame = stack[stack.length - 1] as ValueFrame
    if (frame.index < frame.items.length) {
      const item = frame.items[frame.index++]
      let prefix = ''
      let child: unknown = item
      if (frame.record !== undefined) {
        child = frame.record[item as string]
        if (child === undefined || typeof child === 'function' || typeof child === 'symbol') continue
        prefix = `${JSON.stringify(item)}:`
        size += prefix.length
      }
      const text = enter(child, prefix, false)
      if (text === OVER_LIMIT) return OVER_LIMIT
      if (text !== undefined) frame.parts.push(prefix + text)
    } else {
      stack.pop()
      const text = frame.record === undefined ? `[${frame.parts.join(',')}]` : `{${frame.parts.join(',')}}`
      size += 2 + frame.parts.length
      const parent = stack[stack.length - 1]
      if (parent === undefined) return text
      parent.parts.push(frame.prefix + text)
    }
    if (size > maxBytes) return OVER_LIMIT
  }
}

/** One open array or object of the text walk. */
interface TextFrame {
  readonly object: boolean
  /** Array elements, or object members as `"key":value`. */
  readonly parts: string[]
  /** Object members' decoded keys, parallel to `parts` (the sort key). */
  readonly keys: string[]
  /** Canonical `"key":` of the member whose value is being read. */
  pendingKey: string
  pendingDecoded: string
}

const WHITESPACE = new Set([0x20, 0x09, 0x0a, 0x0d])

/** True when the body's first non-blank character opens a JSON object or array. */
function looksLikeJson(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (WHITESPACE.has(c)) continue
    return c === 0x7b || c === 0x5b
  }
  return false
}

/**
 * Canonical JSON of raw JSON text, without JSON.parse: whitespace dropped, object keys sorted (when `sort`, the
 * last of duplicate keys winning as in JSON.parse), strings re-escaped canonically, and numbers kept exactly as
 * written, so two payloads that differ only beyond a double's precision still differ. Iterative and bounded by
 * `maxDepth`. Returns `undefined` when the text is not JSON.
 */
function canonicalJsonText(
  text: string,
  sort: boolean,
  keep: ((key: string) => boolean) | undefined,
  maxDepth: number,
): string | undefined | typeof OVER_LIMIT {
  const n = text.length
  const stack: TextFrame[] = []
  let i = 0
  const skip = (): void => {
    while (i < n && WHITESPACE.has(text.charCodeAt(i))) i++
  }
  /** A string token at `i`: its canonical text and decoded value, or undefined when malformed. */
  const readString = (): [string, string] | undefined => {
    const start = i
    let escaped = false
    i++
    for (;;) {
      if (i >= n) return undefined
      const c = text.charCodeAt(i)
      if (c === 0x22) break
      if (c < 0x20) return undefined
      if (c === 0x5c) {
        escaped = true
        i++
      }
      i++
    }
    i++
    const token = text.slice(start, i)
    if (!escaped) return [token, token.slice(1, -1)]
    let decoded: unknown
    try {
      decoded = JSON.parse(token)
    } catch {
      return undefined
    }
    return [JSON.stringify(decoded), decoded as string]
  }
  const digits = (): boolean => {
    const start = i
    while (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++
    return i > start
  }
  /** A number token at `i`, exactly as written, or undefined when malformed. */
  const readNumber = (): string | undefined => {
    const start = i
    if (text.charCodeAt(i) === 0x2d) i++
    if (text.charCodeAt(i) === 0x30) i++
    else if (!digits()) return undefined
    if (text.charCodeAt(i) === 0x2e) {
      i++
      if (!digits()) return undefined
    }
    const e = text.charCodeAt(i)
    if (e === 0x65 || e === 0x45) {
      i++
      const sign = text.charCodeAt(i)
      if (sign === 0x2b || sign === 0x2d) i++
      if (!digits()) return undefined
    }
    return text.slice(start, i)
  }
  const readLiteral = (word: string): string | undefined => {
    if (!text.startsWith(word, i)) return undefined
    i += word.length
    return word
  }
  /** Reads `"key":` of an object member into `frame`; false when malformed. */
  const readKey = (frame: TextFrame): boolean => {
    skip()
    if (text.charCodeAt(i) !== 0x22) return false
    const key = readString()
    if (key === undefined) return false
    skip()
    if (text.charCodeAt(i) !== 0x3a) return false
    i++
    frame.pendingKey = `${key[0]}:`
    frame.pendingDecoded = key[1]
    return true
  }
  const close = (frame: TextFrame, root: boolean): string => {
    if (!frame.object) return `[${frame.parts.join(',')}]`
    let order = frame.parts.map((_, index) => index)
    if (root && keep !== undefined) order = order.filter((index) => keep(frame.keys[index] as string))
    if (sort) {
      // Stable: of duplicate keys the last one wins, as JSON.parse keeps the last.
      order.sort((a, b) => {
        const ka = frame.keys[a] as string
        const kb = frame.keys[b] as string
        return ka < kb ? -1 : ka > kb ? 1 : a - b
      })
      order = order.filter(
        (index, at) => at + 1 >= order.length || frame.keys[order[at + 1] as number] !== frame.keys[index],
      )
    }
    return `{${order.map((index) => frame.parts[index]).join(',')}}`
  }

  skip()
  for (;;) {
    // A value starts at `i`.
    skip()
    const c = text.charCodeAt(i)
    let value: string | undefined
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= maxDepth) return OVER_LIMIT
      const frame: TextFrame = { object: c === 0x7b, parts: [], keys: [], pendingKey: '', pendingDecoded: '' }
      stack.push(frame)
      i++
      skip()
      if (text.charCodeAt(i) === (c === 0x7b ? 0x7d : 0x5d)) {
        i++
        stack.pop()
        value = frame.object ? '{}' : '[]'
      } else {
        if (frame.object && !readKey(frame)) return undefined
        continue
      }
    } else if (c === 0x22) value = readString()?.[0]
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) value = readNumber()
    else if (c === 0x74) value = readLiteral('true')
    else if (c === 0x66) value = readLiteral('false')
    else if (c === 0x6e) value = readLiteral('null')
    if (value === undefined) return undefined
    // The value is complete: add it to its container, closing every container that ends after it.
    for (;;) {
      const frame = stack[stack.length - 1]
      if (frame === undefined) {
        skip()
        return i === n ? value : undefined
      }
      if (frame.object) {
        frame.parts.push(frame.pendingKey + value)
        frame.keys.push(frame.pendingDecoded)
      } else frame.parts.push(value)
      skip()
      const next = text.charCodeAt(i)
      if (next === 0x2c) {
        i++
        if (frame.object && !readKey(frame)) return undefined
        break
      }
      if (next !== (frame.object ? 0x7d : 0x5d)) return undefined
      i++
      stack.pop()
      value = close(frame, stack.length === 0)
    }
  }
}

function fieldSet(option: string, value: unknown): ReadonlySet<string> | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidOptionError(option, value, 'an array of field names')
  }
  return new Set(value as string[])
}

function digest(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url')
}
