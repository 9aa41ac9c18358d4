// What a dispatch's options say about retrying it: the method and Idempotency-Key (may it be sent twice?), the
// body (can it be sent twice?), and headers read and added across undici's several header shapes.

/** undici's request headers: a record, a flat `[name, value, …]` array, or an iterable of pairs. */
export type RequestHeaders =
  | Record<string, string | string[] | undefined>
  | readonly (string | Buffer)[]
  | Iterable<[string, string | string[] | undefined]>
  | null
  | undefined

/** Methods that mean the same when sent twice (RFC 9110 §9.2.2), as the retry of issue 20 defines them. */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/** Whether a request may be sent again: an idempotent method, or any method carrying an Idempotency-Key. */
export function idempotentRequest(method: string, headers: RequestHeaders): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase()) || headerValue(headers, 'idempotency-key') !== undefined
}

/** The first value of header `name` (lower case), or `undefined`. */
export function headerValue(headers: RequestHeaders, name: string): string | undefined {
  if (headers == null) return undefined
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) return pairValue(headers as Iterable<unknown>, name)
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === name) return String(headers[i + 1])
    }
    return undefined
  }
  if (isIterable(headers)) return pairValue(headers, name)
  const record = headers as Record<string, string | string[] | undefined>
  const direct = record[name]
  if (direct !== undefined) return Array.isArray(direct) ? direct[0] : String(direct)
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue
    const value = record[key]
    if (value !== undefined) return Array.isArray(value) ? value[0] : String(value)
  }
  return undefined
}

function pairValue(pairs: Iterable<unknown>, name: string): string | undefined {
  for (const pair of pairs) {
    const [key, value] = pair as [string, string | string[] | undefined]
    if (String(key).toLowerCase() === name && value !== undefined) return Array.isArray(value) ? value[0] : value
  }
  return undefined
}

/** `headers` plus `extra`, in a shape undici accepts; a header already present is left as the caller set it. */
export function withHeaders(headers: RequestHeaders, extra: Record<string, string>): RequestHeaders {
  const names = Object.keys(extra).filter((name) => headerValue(headers, name.toLowerCase()) === undefined)
  if (names.length === 0) return headers
  if (headers == null) return extra
  if (Array.isArray(headers) && !(headers.length > 0 && Array.isArray(headers[0]))) {
    const flat = [...(headers as readonly (string | Buffer)[])]
    for (const name of names) flat.push(name, extra[name] as string)
    return flat
  }
  if (Array.isArray(headers) || isIterable(headers)) {
    const pairs = [...(headers as Iterable<[string, string | string[] | undefined]>)]
    for (const name of names) pairs.push([name, extra[name] as string])
    return pairs
  }
  const record = { ...(headers as Record<string, string | string[] | undefined>) }
  for (const name of names) record[name] = extra[name]
  return record
}

function isIterable(value: object): value is Iterable<unknown> {
  return typeof (value as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function'
}

/** How a request body can be sent again. */
export const REPLAYABLE = 0
/** A one-shot body whose length is declared and small: read it once into memory, then it is replayable. */
export const BUFFERABLE = 1
/** A stream or iterable of unknown length: it can be sent once. */
export const ONE_SHOT = 2
export type BodyKind = typeof REPLAYABLE | typeof BUFFERABLE | typeof ONE_SHOT

/**
 * Whether `body` can be sent more than once. Strings and bytes can; a Blob can (its `stream()` starts afresh);
 * a Node stream, a web `ReadableStream` or an async iterable cannot — unless `content-length` declares it at most
 * `maxBufferBytes`, which is how undici's `fetch` hands over every string, bytes or JSON body (as an async
 * generator with a known length), so those are read into memory once and replayed.
 */
export function bodyKind(body: unknown, headers: RequestHeaders, maxBufferBytes: number): BodyKind {
  if (body == null || typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer) {
    return REPLAYABLE
  }
  if (typeof Blob !== 'undefined' && body instanceof Blob) return REPLAYABLE
  if (ArrayBuffer.isView(body)) return REPLAYABLE
  const length = headerValue(headers, 'content-length')
  if (length === undefined || !/^\d{1,15}$/.test(length.trim())) return ONE_SHOT
  if (Number(length) > maxBufferBytes) return ONE_SHOT
  const iterable =
    typeof (body as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function' ||
    typeof (body as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function'
  return iterable ? BUFFERABLE : ONE_SHOT
}

/**
 * Read a one-shot body of declared length into memory. Reads at most `maxBytes + 1` bytes: past that the body
 * lied about its length and the call falls back to sending it once (`rest` carries what was not consumed).
 */
export async function bufferBody(
  body: AsyncIterable<unknown> | Iterable<unknown>,
  maxBytes: number,
): Promise<{ complete: Buffer } | { partial: Buffer[]; rest: AsyncIterator<unknown> | Iterator<unknown> }> {
  const iterator =
    typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
      ? (body as AsyncIterable<unknown>)[Symbol.asyncIterator]()
      : (body as Iterable<unknown>)[Symbol.iterator]()
  const chunks: Buffer[] = []
  let size = 0
  for (;;) {
    const step = await iterator.next()
    if (step.done === true) return { complete: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) }
    const chunk = toBuffer(step.value)
    chunks.push(chunk)
    size += chunk.length
    if (size > maxBytes) return { partial: chunks, rest: iterator }
  }
}

/** The chunks already read, then the rest of the iterator: the body sent once after all. */
export async function* resumeBody(
  partial: Buffer[],
  rest: AsyncIterator<unknown> | Iterator<unknown>,
): AsyncGenerator<Buffer> {
  yield* partial
  for (;;) {
    const step = await rest.next()
    if (step.done === true) return
    yield toBuffer(step.value)
  }
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk
  if (typeof chunk === 'string') return Buffer.from(chunk)
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk)
  throw new TypeError(`A request body chunk must be a string or bytes, got ${typeof chunk}`)
}
