// The response reads the lifecycle relies on (closed, written in full, a close listener), on node:http responses
// (read through Node's own functions) and on HTTP/2 compatibility responses (read the ordinary way).

import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { requestContext } from '../src/adapter.js'
import { onResponseClose, responseClosed, responseFinished } from '../src/internal/response.js'
import { until } from './helpers.js'

const closers: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0)) await close()
})

describe('response reads', () => {
  it('node:http: closed and written in full, as the response itself says', async () => {
    const seen: { closedBefore: boolean; closedAfter?: boolean; finished?: boolean; own?: boolean }[] = []
    const server = http.createServer((_req, res) => {
      const entry: (typeof seen)[number] = { closedBefore: responseClosed(res) }
      seen.push(entry)
      onResponseClose(res, () => {
        entry.closedAfter = responseClosed(res)
        entry.finished = responseFinished(res)
        entry.own = res.closed === entry.closedAfter && res.writableFinished === entry.finished
      })
      res.end('ok')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    closers.push(() => new Promise((resolve) => server.close(() => resolve())))
    const { port } = server.address() as AddressInfo
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok')
    await until(() => seen[0]?.closedAfter !== undefined)
    expect(seen).toEqual([{ closedBefore: false, closedAfter: true, finished: true, own: true }])
  })

  it('HTTP/2 compatibility responses: a cancelled stream aborts the signal, a completed one ends the lifecycle', async () => {
    const kinds: (string | undefined)[] = []
    let completed: ReturnType<typeof requestContext> | undefined
    const server = http2.createServer((req, res) => {
      const context = requestContext(res as unknown as http.ServerResponse)
      if (req.url === '/ok') {
        completed = context
        res.end('ok')
        return
      }
      context.signal.addEventListener('abort', () => kinds.push(context.abortKind))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    closers.push(() => new Promise((resolve) => server.close(() => resolve())))
    const { port } = server.address() as AddressInfo
    const client = http2.connect(`http://127.0.0.1:${port}`)
    closers.unshift(async () => void client.close())

    const ok = client.request({ ':path': '/ok' })
    let body = ''
    ok.setEncoding('utf8').on('data', (chunk: string) => {
      body += chunk
    })
    await new Promise((resolve) => ok.on('end', resolve))
    expect(body).toBe('ok')
    await sleep(20)
    expect(completed?.abortKind).toBeUndefined() // answered in full: its close is not a client leaving

    const hanging = client.request({ ':path': '/hang' })
    hanging.on('error', () => {})
    await sleep(50)
    hanging.close(http2.constants.NGHTTP2_CANCEL)
    await until(() => kinds.length === 1)
    expect(kinds).toEqual(['client-gone'])
  })
})
