// Graceful shutdown and idempotency results still being written: an order completes while Redis is paused
// (SIGSTOP), so its record is held in memory and retried in the background; then the process gets SIGTERM. The
// shutdown gives the held record what is left of its deadline, before the hook closes the Redis client:
// - Redis resumed during that time: the record is written before the process exits (exit code 0).
// - Redis still paused at the deadline: the process exits on time, having reported the record given up
//   (`store_error`, exit code 1).
// Before the fix the shutdown did not wait: the process quit Redis and exited with the record unwritten, so a
// retry elsewhere would have executed the order again once the lock lapsed.

import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createIdempotency, type RequestView } from '@breakwater/core'
import { RedisIdempotencyStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleForChild } from '../support/bundle.js'
import { type RedisServer, sleep, startRedis } from '../support/redis-server.js'

const STORE_TIMEOUT_MS = 250
const HOOK_TIMEOUT_MS = 500
const HANDLER_MS = 300
const AUTHORIZATION = 'Bearer alice'
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
const prefix = `bw-shutdown-flush-${randomUUID().slice(0, 8)}:`

let server: RedisServer
let script: string
let admin: Redis
const children: ChildProcess[] = []

beforeAll(async () => {
  server = await startRedis()
  script = await bundleForChild(here('./shutdown-flush-worker.ts'))
  admin = new Redis(server.url)
}, 60_000)

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  admin?.disconnect()
  if (server?.running) server.resume()
  await server?.stop()
})

interface Worker {
  port: number
  lines: Array<Record<string, unknown>>
  /** Resolves with the exit code and the monotonic ms of the exit. */
  exited: Promise<{ code: number | null; at: number }>
  next(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>
  child: ChildProcess
}

async function startWorker(timeoutMs: number): Promise<Worker> {
  const child = spawn(process.execPath, [script], {
    env: {
      ...process.env,
      REDIS_URL: server.url,
      PREFIX: prefix,
      STORE_TIMEOUT_MS: String(STORE_TIMEOUT_MS),
      TIMEOUT_MS: String(timeoutMs),
      HOOK_TIMEOUT_MS: String(HOOK_TIMEOUT_MS),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(child)
  const lines: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  createInterface({ input: child.stdout! }).on('line', (text) => {
    lines.push(JSON.parse(text) as Record<string, unknown>)
    for (const waiter of waiters) waiter()
  })
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => {
    child.once('exit', (code) => resolve({ code, at: performance.now() }))
  })
  const next = (match: (line: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = (): void => {
        const line = lines.find(match)
        if (line === undefined) return
        waiters.delete(check)
        resolve(line)
      }
      waiters.add(check)
      check()
      void exited.then(() => {
        check()
        if (waiters.delete(check)) reject(new Error(`worker exited before ${match}: ${JSON.stringify(lines)}`))
      })
    })
  const { listening } = await next((line) => 'listening' in line)
  return { port: Number(listening), lines, exited, next, child }
}

/** What the store holds for `key` on the worker's route, read through a policy of its own. */
async function recordOf(key: string) {
  const policy = createIdempotency({
    store: new RedisIdempotencyStore({ client: admin, prefix }),
    scope: (request) => request.header('authorization'),
  })
  const view: RequestView = {
    method: 'POST',
    path: '/orders',
    ip: '127.0.0.1',
    header: (name) => (name.toLowerCase() === 'authorization' ? AUTHORIZATION : undefined),
    signal: new AbortController().signal,
  }
  return policy.lookup(view, key)
}

/**
 * An order whose completion meets a paused Redis: it answers 201 once the first write timed out, its record
 * held for background writes. Redis stays paused when this resolves.
 */
async function orderDuringStall(worker: Worker, key: string): Promise<string> {
  const answer = fetch(`http://127.0.0.1:${worker.port}/orders?delayMs=${HANDLER_MS}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, authorization: AUTHORIZATION },
    body: JSON.stringify({ item: 'book' }),
  })
  await worker.next((line) => line.started === key)
  server.pause()
  const response = await answer
  expect(response.status).toBe(201)
  return ((await response.json()) as { id: string }).id
}

describe('graceful shutdown flushes idempotency results a paused Redis has not taken yet', () => {
  it('Redis resumed during the shutdown: the record is written before the process exits', async () => {
    const worker = await startWorker(6000)
    const key = `resumed-${randomUUID()}`
    const id = await orderDuringStall(worker, key)
    worker.child.kill('SIGTERM')
    await sleep(1000) // the shutdown is under way, the record still held: Redis comes back
    server.resume()
    const { code } = await worker.exited
    expect(worker.lines.filter((line) => 'settled' in line)).toEqual([{ settled: 'stored', status: 201 }])
    expect(code).toBe(0)
    const record = await recordOf(key)
    if (record?.state !== 'completed') throw new Error(`record not completed: ${JSON.stringify(record)}`)
    expect(JSON.parse(record.response.body.toString())).toEqual({ id })
  }, 30_000)

  it('Redis still paused at the shutdown deadline: the process exits on time and reports the record given up', async () => {
    const timeoutMs = 1500
    const worker = await startWorker(timeoutMs)
    const key = `paused-${randomUUID()}`
    await orderDuringStall(worker, key)
    const signalledAt = performance.now()
    worker.child.kill('SIGTERM')
    const { code, at } = await worker.exited
    server.resume()
    const took = at - signalledAt
    // The flush used the deadline (it waited for Redis), and the hooks then had their own bound; no longer.
    expect(took).toBeGreaterThanOrEqual(timeoutMs - 100)
    expect(took).toBeLessThan(timeoutMs + HOOK_TIMEOUT_MS + 1500)
    expect(worker.lines.filter((line) => 'settled' in line)).toEqual([{ settled: 'store_error', status: 201 }])
    expect(code).toBe(1)
    // (Redis may still apply a write that was on the wire when it froze: "given up" means not waited for.)
  }, 30_000)
})
