// One request over a raw TCP socket, and a strict reading of every byte the server sent back: exactly one
// HTTP/1.1 response (status line, well-formed header lines, a body delimited as its headers say) and nothing
// after it. What fetch or node:http would hide or reject: a body with no status line, a second response.

import { connect } from 'node:net'

export interface ExchangeOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
  /** Keep listening until then (ms since the epoch), even after a full response, to catch bytes written late. */
  listenUntil: number
}

/** A server slower than `listenUntil` (a loaded machine) is waited for this much longer before giving up. */
const GRACE_MS = 5000
/** Once bytes came, the connection must stay quiet this long before the exchange counts as over. */
const SETTLE_MS = 100

/**
 * Send one request on a fresh connection (kept alive) and collect everything received until `listenUntil` —
 * longer if nothing came by then (up to {@link GRACE_MS}), and never less than {@link SETTLE_MS} after the last
 * bytes — or until the server closes the connection.
 */
export function exchange(url: string, path: string, options: ExchangeOptions): Promise<Buffer> {
  const { hostname, port } = new URL(url)
  const body = options.body ?? ''
  const lines = [
    `${options.method ?? 'POST'} ${path} HTTP/1.1`,
    `Host: ${hostname}:${port}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
  ]
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let lastDataAt = 0
    let timer: NodeJS.Timeout | undefined
    const socket = connect(Number(port), hostname)
    const done = (): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(Buffer.concat(chunks))
    }
    const check = (): void => {
      const now = Date.now()
      const settled = chunks.length > 0 && now - lastDataAt >= SETTLE_MS
      if ((now >= options.listenUntil && settled) || now >= options.listenUntil + GRACE_MS) done()
      else timer = setTimeout(check, 25)
    }
    timer = setTimeout(check, Math.max(0, options.listenUntil - Date.now()))
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      lastDataAt = Date.now()
    })
    socket.on('end', done)
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`)
  })
}

export interface ParsedResponse {
  status: number
  /** Lower-cased names; repeated fields joined with `, `. */
  headers: Record<string, string>
  body: string
}

const STATUS_LINE = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*$/

/**
 * Read `bytes` as exactly one HTTP/1.1 response; throws, saying what is wrong and showing the start of the bytes,
 * when they are anything else (no status line, a malformed header, a body shorter or longer than announced,
 * bytes after the response).
 */
export function parseOneResponse(bytes: Buffer): ParsedResponse {
  const text = bytes.toString('latin1')
  const fail = (why: string): never => {
    throw new Error(`${why}; received ${bytes.length} bytes: ${JSON.stringify(text.slice(0, 200))}`)
  }
  const headEnd = text.indexOf('\r\n\r\n')
  if (headEnd < 0) fail('no complete response head')
  const [statusLine = '', ...headerLines] = text.slice(0, headEnd).split('\r\n')
  const status = STATUS_LINE.exec(statusLine)
  if (status === null) fail('the response does not start with an HTTP/1.1 status line')
  const headers: Record<string, string> = {}
  for (const line of headerLines) {
    const match = HEADER_LINE.exec(line)
    if (match === null) return fail(`malformed header line ${JSON.stringify(line)}`)
    const name = match[1]!.toLowerCase()
    headers[name] = headers[name] === undefined ? match[2]! : `${headers[name]}, ${match[2]!}`
  }
  let rest = bytes.subarray(Buffer.byteLength(text.slice(0, headEnd + 4), 'latin1'))
  let body: Buffer
  if (headers['transfer-encoding'] !== undefined) {
    if (headers['transfer-encoding'].toLowerCase() !== 'chunked') fail('a transfer coding other than chunked')
    const parts: Buffer[] = []
    for (;;) {
      const lineEnd = rest.indexOf('\r\n')
      if (lineEnd < 0) fail('an unterminated chunk size line')
      const size = Number.parseInt(rest.subarray(0, lineEnd).toString('latin1'), 16)
      if (!Number.isInteger(size) || size < 0) fail('a malformed chunk size')
      rest = rest.subarray(lineEnd + 2)
      if (size === 0) {
        if (rest.subarray(0, 2).toString('latin1') !== '\r\n') fail('trailers or garbage after the last chunk')
        rest = rest.subarray(2)
        break
      }
      if (rest.length < size + 2 || rest.subarray(size, size + 2).toString('latin1') !== '\r\n') fail('a short chunk')
      parts.push(rest.subarray(0, size))
      rest = rest.subarray(size + 2)
    }
    body = Buffer.concat(parts)
  } else if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length'])
    if (!Number.isInteger(length) || length < 0) fail('a malformed Content-Length')
    if (rest.length < length) fail(`a body shorter (${rest.length}) than its Content-Length (${length})`)
    body = rest.subarray(0, length)
    rest = rest.subarray(length)
  } else {
    // Delimited by the connection closing, which only a `Connection: close` response may do.
    if (headers.connection?.toLowerCase() !== 'close') fail('a body with neither a length nor chunked coding')
    body = rest
    rest = Buffer.alloc(0)
  }
  if (rest.length > 0) fail(`${rest.length} bytes after the response`)
  return { status: Number(status![1]), headers, body: body.toString('utf8') }
}
