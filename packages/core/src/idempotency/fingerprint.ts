// The request fingerprint stored with a record: a digest of the body, so the same key reused with a different
// payload is caught (422) instead of silently answered with another request's response.

import { createHash } from 'node:crypto'
import { InvalidOptionError } from '../errors.js'
import type { RequestView } from '../request-view.js'

/** How the body is fingerprinted; see {@link IdempotencyOptions.fingerprint}. */
export interface FingerprintOptions {
  /** Hash parsed JSON bodies with object keys sorted, so `{a,b}` and `{b,a}` match. Default `true`. */
  canonical?: boolean
  /** Only these top-level fields of an object body count (e.g. `['amount', 'currency']`). Default: all. */
  include?: readonly string[]
  /** These top-level fields of an object body are ignored (e.g. a client timestamp). Default: none. */
  exclude?: readonly string[]
}

/** Computes the fingerprint of one request from its (parsed) body. */
export type Fingerprinter = (request: RequestView, body: unknown) => string

const EMPTY = digest('')

/**
 * Build the fingerprint function: a custom function is used as given, `false` fingerprints nothing (every
 * payload matches), and options pick canonical JSON and the fields that count.
 *
 * @example
 * const fingerprint = fingerprinter({ exclude: ['sentAt'] })
 * fingerprint(view, { amount: 5, sentAt: 1 }) === fingerprint(view, { sentAt: 2, amount: 5 }) // true
 */
export function fingerprinter(option: FingerprintOptions | Fingerprinter | false | undefined): Fingerprinter {
  if (option === false) return () => ''
  if (typeof option === 'function') {
    return (request, body) => {
      const value = option(request, body)
      if (typeof value !== 'string') throw new InvalidOptionError('fingerprint()', value, 'a string')
      return value
    }
  }
  if (option !== undefined && (typeof option !== 'object' || option === null)) {
    throw new InvalidOptionError('fingerprint', option, 'an object, a function or false')
  }
  const canonical = option?.canonical ?? true
  const include = fieldSet('fingerprint.include', option?.include)
  const exclude = fieldSet('fingerprint.exclude', option?.exclude)
  return (_request, body) => {
    if (body === undefined || body === null || body === '') return EMPTY
    if (typeof body === 'string') return digest(body)
    if (Buffer.isBuffer(body) || body instanceof Uint8Array) return digest(body)
    if (typeof body !== 'object') return digest(String(body))
    const selected = include || exclude ? select(body as Record<string, unknown>, include, exclude) : body
    return digest(canonical ? canonicalJson(selected) : (JSON.stringify(selected) ?? ''))
  }
}

/** JSON with object keys in sorted order at every depth, so key order never changes the digest. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  const json = (value as { toJSON?: () => unknown }).toJSON
  if (typeof json === 'function') return canonicalJson(json.call(value))
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const record = value as Record<string, unknown>
  const parts: string[] = []
  for (const key of Object.keys(record).sort()) {
    if (record[key] === undefined || typeof record[key] === 'function') continue
    parts.push(`${JSON.stringify(key)}:${canonicalJson(record[key])}`)
  }
  return `{${parts.join(',')}}`
}

function select(
  body: Record<string, unknown>,
  include: ReadonlySet<string> | undefined,
  exclude: ReadonlySet<string> | undefined,
): Record<string, unknown> {
  if (Array.isArray(body)) return body
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(body)) {
    if (include && !include.has(key)) continue
    if (exclude?.has(key)) continue
    out[key] = body[key]
  }
  return out
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
