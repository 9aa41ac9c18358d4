// A real loopback upstream that answers from a script (status, headers, delay) and records what reached it: each
// request's method, headers and body, and each connection that closed before its response was finished.

import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Answer {
  status: number
  headers?: Record<string, string>
  body?: string
  /** Milliseconds before answering; the answer is dropped if the caller goes first. */
  delayMs?: number
}

export interface Received {
  method: string
  path: string
  headers: http.IncomingHttpHeaders
  body: string
  /** `performance.now()` when the request had been read. */
  at: number
}

export interface ScriptedUpstream {
  readonly origin: string
  /** Answers in order; when it runs out, `fallback`. */
  script: Answer[]
  fallback: Answer
  readonly received: Received[]
  /** Paths whose connection closed before their response was finished (the caller cancelled). */
  readonly closedEarly: string[]
  /** Connections ever accepted. */
  connections: number
  close(): Promise<void>
}

export async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  const upstream: ScriptedUpstream = {
    origin: '',
    script: [],
    fallback: { status: 200, body: 'ok' },
    received: [],
    closedEarly: [],
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      upstream.received.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        at: performance.now(),
      })
      const answer = upstream.script.shift() ?? upstream.fallback
      const send = () => {
        res.writeHead(answer.status, answer.headers)
        res.end(answer.body ?? `status ${answer.status}`)
      }
      if (answer.delayMs === undefined) send()
      else {
        const timer = setTimeout(send, answer.delayMs)
        res.on('close', () => clearTimeout(timer))
      }
    })
    res.on('close', () => {
      if (!res.writableFinished) upstream.closedEarly.push(req.url ?? '')
    })
  })
  server.on('connection', () => {
    upstream.connections++
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  ;(upstream as { origin: string }).origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return upstream
}
