// Exactly-once through a Redis stall: three processes (Express, Fastify, Koa) share one Redis that is paused
// (SIGSTOP) while an order's handler finishes, with the owner's store guard already tripped by a duplicate, so
// the completion meets a store that is down. Whatever the pause — 0.5 s, 1 s, 5 s, or longer than the lock —
// the order executes once, its client gets its 201, and once Redis is back every process replays that 201.
//
// Runs: 12 stalls of 0.5 s and 12 of 1 s (4 rounds × one owner per framework), 3 of 5 s, 6 longer than a
// 1.5 s lock — 33 in all. On the code before the fix each stall lost the record (the completion was skipped
// while the guard said "down"), so a duplicate executed again once the lock lapsed; a 1-in-3 failure would
// pass 12 runs with a chance of (2/3)^12 < 1 %.

import { type ChildProcess, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleForChild } from '../support/bundle.js'
import { type RedisServer, sleep, startRedis } from '../support/redis-server.js'
import type { ExecutionMessage, StallJob } from './stall-worker.js'

const FRAMEWORKS = ['express', 'fastify', 'koa'] as const
const LONG_LOCK_MS = 8000
const SHORT_LOCK_MS = 1500
const STORE_TIMEOUT_MS = 250
/**
 * How long each handler runs after it started. Redis is paused right then; a duplicate sent to the owner's own
 * process times out after STORE_TIMEOUT_MS and marks the store down there, before the handler completes.
 */
const HANDLER_MS = 420
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
const prefix = `bw-stall-${randomUUID().slice(0, 8)}:`

let server: RedisServer
const workers: ChildProcess[] = []
const urls: string[] = []
/** Per Idempotency-Key: how many handlers started, and the ids they answered. */
const started = new Map<string, number>()
const executedIds = new Map<string, string[]>()

beforeAll(async () => {
  server = await startRedis()
  const script = await bundleForChild(here('./stall-worker.ts'))
  const ports = await Promise.all(
    FRAMEWORKS.map((framework) => {
      const job: StallJob = {
        url: server.url,
        prefix,
        framework,
        longLockMs: LONG_LOCK_MS,
        shortLockMs: SHORT_LOCK_MS,
        storeTimeoutMs: STORE_TIMEOUT_MS,
      }
      return new Promise<number>((resolve, reject) => {
        const worker = fork(script, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
        workers.push(worker)
        worker.on('message', (message: ExecutionMessage | { port: number }) => {
          if ('port' in message) resolve(message.port)
          else if (message.type === 'started') started.set(message.key, (started.get(message.key) ?? 0) + 1)
          else executedIds.set(message.key, [...(executedIds.get(message.key) ?? []), message.id ?? ''])
        })
        worker.once('exit', (code) => reject(new Error(`${framework} worker exited with ${code}`)))
      })
    }),
  )
  urls.push(...ports.map((port) => `http://127.0.0.1:${port}`))
}, 60_000)

afterAll(async () => {
  for (const worker of workers) if (worker.exitCode === null && worker.signalCode === null) worker.kill()
  if (server?.running) server.resume()
  await server?.stop()
})

interface Reply {
  status: number
  replayed: boolean
  id: string | undefined
}

async function order(url: string, path: string, key: string, delayMs = 0): Promise<Reply> {
  const response = await fetch(`${url}${path}?delayMs=${delayMs}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, authorization: 'Bearer alice' },
    body: JSON.stringify({ item: 'book', quantity: 1 }),
  })
  const body = (await response.json()) as { id?: string }
  return { status: response.status, replayed: response.headers.get('idempotent-replayed') === 'true', id: body.id }
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * One round: an order per framework (each process owns one key), Redis paused as the handlers start and
 * resumed after `pauseMs`. Then duplicates go to every process until each one replays the first 201 — or, on
 * broken code, one of them executes the order again (or none replays within two lock periods).
 */
async function stallRound(path: string, lockMs: number, pauseMs: number, label: string): Promise<void> {
  const keys = FRAMEWORKS.map((framework) => `${label}-${framework}-${randomUUID().slice(0, 8)}`)
  const firsts = keys.map((key, i) => order(urls[i]!, path, key, HANDLER_MS))
  await until(() => keys.every((key) => started.has(key)), 5000, 'the handlers to start')
  server.pause()
  const pausedAt = Date.now()
  // Duplicates while Redis hangs, to every process — the owner's own included, which trips its store guard.
  const during = keys.flatMap((key) => urls.map((url) => order(url, path, key)))
  await sleep(pauseMs - (Date.now() - pausedAt))
  server.resume()
  const answers = await Promise.all(firsts)
  for (const answer of await Promise.all(during)) {
    expect(answer.status === 201 && !answer.replayed, 'a duplicate executed during the stall').toBe(false)
  }
  for (const [i, first] of answers.entries()) {
    expect(first, `the first order of ${FRAMEWORKS[i]}`).toMatchObject({ status: 201, replayed: false })
  }
  // Retries from every process until each replays the first answer; never a second execution.
  await Promise.all(
    keys.map(async (key, i) => {
      const replayedBy = new Set<number>()
      const deadline = Date.now() + 2 * lockMs + 3000
      while (replayedBy.size < urls.length) {
        expect(Date.now(), `${key}: not replayed by every process within two lock periods`).toBeLessThan(deadline)
        const replies = await Promise.all(urls.map((url) => order(url, path, key)))
        for (const [p, reply] of replies.entries()) {
          expect(reply.status === 201 && !reply.replayed, `${key} executed again by ${FRAMEWORKS[p]}`).toBe(false)
          if (reply.status === 201) {
            expect(reply.id).toBe(answers[i]!.id)
            replayedBy.add(p)
          }
        }
        if (replayedBy.size < urls.length) await sleep(100)
      }
      expect(started.get(key), `${key}: handler runs`).toBe(1)
      expect(executedIds.get(key)).toEqual([answers[i]!.id])
    }),
  )
}

describe('an order whose completion meets a paused Redis executes once, on Express, Fastify and Koa', () => {
  for (const pauseMs of [500, 1000]) {
    it(`Redis paused ${pauseMs} ms across the completion, 4 rounds × 3 frameworks = 12 runs`, async () => {
      for (let round = 0; round < 4; round++) await stallRound('/orders', LONG_LOCK_MS, pauseMs, `p${pauseMs}-${round}`)
    }, 90_000)
  }

  it('Redis paused 5 s across the completion, 1 round × 3 frameworks', async () => {
    await stallRound('/orders', LONG_LOCK_MS, 5000, 'p5000')
  }, 60_000)

  it(`Redis paused 3 s, twice the ${SHORT_LOCK_MS} ms lock: the lapsed lock is renewed for its live owner, 2 rounds × 3 frameworks`, async () => {
    for (let round = 0; round < 2; round++)
      await stallRound('/orders-short-lock', SHORT_LOCK_MS, 3000, `lapse-${round}`)
  }, 60_000)
})
