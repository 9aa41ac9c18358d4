// A real loopback upstream for the outbound tests: counts the calls it gets per path and sees when a caller
// closes its connection before the answer.

import http from 'node:http'
import { performance } from 'node:perf_hooks'

export interface Upstream {
  readonly url: string
  /** Requests received per path. */
  readonly calls: Map<string, number>
  /** Requests whose connection closed before their response was sent (the caller cancelled). */
  readonly closedEarly: string[]
  /** Status `/flaky` answers with (default 500). */
  flakyStatus: number
  /** Status `/inventory` and `/recommendations` answer with (default 200, a JSON body). */
  jsonStatus: number
  /** Milliseconds `/inventory` and `/recommendations` wait before answering (default 0). */
  jsonDelayMs: number
  /** `Request-Timeout-Ms` of every request, as received. */
  readonly timeoutHeaders: string[]
  /** `Idempotency-Key` of every `POST /orders`, as received. */
  readonly idempotencyKeys: string[]
  /** Statuses `POST /orders` answers with, in turn (then 201). */
  orderStatuses: number[]
  /** `/tail?i=N&attempt=A` waits `tailDelayMs` when A is 1 and N a multiple of `tailEvery` (0: never). */
  tailEvery: number
  tailDelayMs: number
  /** Latencies (ms) of the `/tail` answers the upstream completed. */
  readonly tailLatencies: number[]
  close(): Promise<void>
}

/**
 * Routes: `/slow?ms=N` answers after N ms (default 2000), `/fast` at once, `/flaky` with `flakyStatus`,
 * `/inventory` and `/recommendations` with `jsonStatus` and `{ "items": [...], "query": "<search>" }`,
 * `POST /orders` with the next of `orderStatuses` (recording the Idempotency-Key), `/tail?i=N&attempt=A` at once,
 * except a first attempt (A = 1) of every `tailEvery`-th call (N), which waits `tailDelayMs`.
 */
export async function startUpstream(): Promise<Upstream> {
  const calls = new Map<string, number>()
  const closedEarly: string[] = []
  const upstream: Upstream = {
    url: '',
    calls,
    closedEarly,
    flakyStatus: 500,
    jsonStatus: 200,
    jsonDelayMs: 0,
    timeoutHeaders: [],
    idempotencyKeys: [],
    orderStatuses: [],
    tailEvery: 10,
    tailDelayMs: 1000,
    tailLatencies: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://upstream')
    calls.set(url.pathname, (calls.get(url.pathname) ?? 0) + 1)
    upstream.timeoutHeaders.push(String(req.headers['request-timeout-ms']))
    res.on('close', () => {
      if (!res.writableFinished) closedEarly.push(url.pathname)
    })
    if (url.pathname === '/slow') {
      const timer = setTimeout(() => res.end('slow'), Number(url.searchParams.get('ms') ?? 2000))
      res.on('close', () => clearTimeout(timer))
    } else if (url.pathname === '/orders' && req.method === 'POST') {
      upstream.idempotencyKeys.push(String(req.headers['idempotency-key']))
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const status = upstream.orderStatuses.shift() ?? 201
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ status, body: Buffer.concat(chunks).toString() }))
      })
    } else if (url.pathname === '/tail') {
      const index = Number(url.searchParams.get('i') ?? 0)
      const first = url.searchParams.get('attempt') === '1'
      const started = performance.now()
      const answer = () => {
        upstream.tailLatencies.push(performance.now() - started)
        res.end('tail')
      }
      if (upstream.tailEvery > 0 && first && index % upstream.tailEvery === 0) {
        const timer = setTimeout(answer, upstream.tailDelayMs)
        res.on('close', () => clearTimeout(timer))
      } else answer()
    } else if (url.pathname === '/flaky') {
      res.statusCode = upstream.flakyStatus
      res.end('flaky')
    } else if (url.pathname === '/inventory' || url.pathname === '/recommendations') {
      const answer = () => {
        res.writeHead(upstream.jsonStatus, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ items: [url.pathname.slice(1)], query: url.search }))
      }
      if (upstream.jsonDelayMs === 0) answer()
      else {
        const timer = setTimeout(answer, upstream.jsonDelayMs)
        res.on('close', () => clearTimeout(timer))
      }
    } else res.end('fast')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP')
  return Object.assign(upstream, { url: `http://127.0.0.1:${address.port}` })
}
