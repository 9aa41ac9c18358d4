// Graceful shutdown proved on real processes: each framework's server runs in a child process with requests in
// flight and receives a real SIGTERM. Readiness fails during the drain delay while those requests go on, they
// complete with 200, new connections are refused after the delay, an idle keep-alive connection is closed, and
// the process exits 0 within the timeout. A hung request is aborted (503 BW_SHUTDOWN) at the timeout, exit 1.

import { type ChildProcess, spawn } from 'node:child_process'
import http from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { rawRequest } from '../adapter-conformance/support.js'
import { bundleForChild } from '../support/bundle.js'

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
/** Inside the repository, so the bundle's framework imports resolve through test/node_modules. */
const OUT_DIR = here('./dist')
const FRAMEWORKS = ['express', 'fastify', 'koa'] as const

beforeAll(async () => {
  await bundleForChild(here('./shutdown-server.ts'))
}, 60_000)

interface Child {
  url: string
  process: ChildProcess
  lines: Array<Record<string, unknown>>
  exited: Promise<{ code: number | null; at: number }>
}

const children: ChildProcess[] = []
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL')
})

async function startServer(framework: string, drainMs: number, timeoutMs: number): Promise<Child> {
  const child = spawn(process.execPath, [`${OUT_DIR}/shutdown-server.js`, framework], {
    env: { ...process.env, DRAIN_MS: String(drainMs), TIMEOUT_MS: String(timeoutMs) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(child)
  const lines: Array<Record<string, unknown>> = []
  let buffered = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk
    let newline = buffered.indexOf('\n')
    while (newline !== -1) {
      lines.push(JSON.parse(buffered.slice(0, newline)))
      buffered = buffered.slice(newline + 1)
      newline = buffered.indexOf('\n')
    }
  })
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, at: performance.now() })),
  )
  const deadline = Date.now() + 15_000
  while (!lines.some((line) => 'listening' in line)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${framework} server did not start`)
    await sleep(20)
  }
  const port = lines.find((line) => 'listening' in line)?.listening
  return { url: `http://127.0.0.1:${port}`, process: child, lines, exited }
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await sleep(10)
  }
}

describe.each(FRAMEWORKS)('%s graceful shutdown on SIGTERM', (framework) => {
  it('fails readiness during the drain delay, finishes in-flight requests with 200, refuses new connections after it, exits 0', async () => {
    const DRAIN_MS = 500
    const TIMEOUT_MS = 4_000
    const server = await startServer(framework, DRAIN_MS, TIMEOUT_MS)
    expect((await rawRequest(`${server.url}/readyz`)).status).toBe(200)

    // An idle keep-alive connection, left open by a client that made one request.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    let idleClosedAt: number | undefined
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${server.url}/livez`, { agent }, (response) => {
          response.resume()
          response.on('end', resolve)
        })
        .on('socket', (socket: Socket) => socket.once('close', () => (idleClosedAt ??= performance.now())))
        .on('error', reject)
    })

    // Three requests in flight that take longer than the drain delay.
    const inflight = [1, 2, 3].map(() => rawRequest(`${server.url}/work?ms=1200`))
    await until(() => server.lines.filter((line) => 'started' in line).length === 3)

    const signalledAt = performance.now()
    server.process.kill('SIGTERM')
    await until(() => server.lines.some((line) => line.phase === 'draining'))
    const ready = await rawRequest(`${server.url}/readyz`)
    expect(ready.status).toBe(503)
    expect(ready.headers['content-type']).toMatch(/^application\/health\+json/)
    expect(JSON.parse(ready.body)).toEqual({ status: 'fail' })
    expect((await rawRequest(`${server.url}/livez`)).status).toBe(200) // draining is no reason to restart
    expect(performance.now() - signalledAt).toBeLessThan(DRAIN_MS) // all of that within the drain delay

    await sleep(DRAIN_MS + 200 - (performance.now() - signalledAt))
    await expect(rawRequest(`${server.url}/livez`)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    expect(idleClosedAt).toBeGreaterThanOrEqual(signalledAt + DRAIN_MS - 20)

    const responses = await Promise.all(inflight)
    expect(responses.map((r) => [r.status, r.body])).toEqual(Array(3).fill([200, '{"waited":1200}']))
    const { code, at } = await server.exited
    expect(code).toBe(0)
    expect(at - signalledAt).toBeLessThan(TIMEOUT_MS)
    expect(server.lines.filter((line) => 'phase' in line || 'hook' in line)).toEqual([
      { phase: 'draining', reason: 'SIGTERM' },
      { phase: 'closing', reason: 'SIGTERM' },
      { hook: 'flush' },
      { phase: 'hook', reason: 'SIGTERM' },
      { phase: 'exit', reason: 'SIGTERM', exitCode: 0 },
    ])
    agent.destroy()
  })

  it('aborts a hung request at the shutdown timeout: its signal aborts, the client gets 503, exit code 1', async () => {
    const DRAIN_MS = 200
    const TIMEOUT_MS = 1_000
    const server = await startServer(framework, DRAIN_MS, TIMEOUT_MS)
    const hung = rawRequest(`${server.url}/hang`)
    const quick = rawRequest(`${server.url}/work?ms=400`)
    await until(() => server.lines.filter((line) => 'started' in line).length === 2)
    const signalledAt = performance.now()
    server.process.kill('SIGTERM')

    const finished = await quick
    expect(finished.status).toBe(200)
    const response = await hung
    const answeredAfter = performance.now() - signalledAt
    expect(response.status).toBe(503)
    expect(JSON.parse(response.body)).toMatchObject({ status: 503, code: 'BW_SHUTDOWN' })
    expect(answeredAfter).toBeGreaterThanOrEqual(TIMEOUT_MS - 50)
    expect(answeredAfter).toBeLessThan(TIMEOUT_MS + 700)

    const { code, at } = await server.exited
    expect(code).toBe(1)
    expect(at - signalledAt).toBeLessThan(TIMEOUT_MS + 2_000) // timeout + the 1 s abort grace, at most
    expect(server.lines).toContainEqual({ aborted: 600_000, kind: 'shutdown' })
    expect(server.lines.filter((line) => 'phase' in line).map((line) => line.phase)).toEqual([
      'draining',
      'closing',
      'timed_out',
      'hook',
      'exit',
    ])
    expect(server.lines.at(-1)).toEqual({ phase: 'exit', reason: 'SIGTERM', exitCode: 1 })
  })
})
