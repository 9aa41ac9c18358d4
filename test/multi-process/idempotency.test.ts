// Four processes — Express, Fastify, Koa and Express again — serve one route through RedisIdempotencyStore on
// one Redis. A burst of 200 duplicates spread over them runs the handler exactly once; a process killed mid-
// request keeps its key locked (409) for one lock TTL, renewed once by the first retry past it, after which a
// retry executes.

import { type ChildProcess, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleForChild } from '../support/bundle.js'
import { sleep, testRedisUrl, untilReady } from '../support/redis-server.js'

const FRAMEWORKS = ['express', 'fastify', 'koa', 'express'] as const
const DUPLICATES = 200
const LOCK_TTL_MS = 1500
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
/** Inside the repository, so the bundle's framework imports resolve through test/node_modules. */
const OUT_DIR = here('./dist')
const prefix = `bw-idem-mp-${randomUUID().slice(0, 8)}:`

let admin: Redis
const workers: ChildProcess[] = []
const urls: string[] = []

beforeAll(async () => {
  await bundleForChild(here('./idempotency-worker.ts'))
  admin = new Redis(testRedisUrl())
  await untilReady(admin)
  const job = (framework: string) => JSON.stringify({ url: testRedisUrl(), prefix, framework, lockTtlMs: LOCK_TTL_MS })
  const ports = await Promise.all(
    FRAMEWORKS.map(
      (framework) =>
        new Promise<number>((resolve, reject) => {
          const worker = fork(`${OUT_DIR}/idempotency-worker.js`, [job(framework)], {
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          })
          workers.push(worker)
          worker.once('message', (message) => resolve((message as { port: number }).port))
          worker.once('exit', (code) => reject(new Error(`${framework} worker exited with ${code}`)))
        }),
    ),
  )
  urls.push(...ports.map((port) => `http://127.0.0.1:${port}`))
})

afterAll(async () => {
  for (const worker of workers) if (worker.exitCode === null && worker.signalCode === null) worker.kill()
  admin?.disconnect()
})

const counter = async (name: string): Promise<number> => Number((await admin.get(`${prefix}${name}`)) ?? 0)

interface Reply {
  status: number
  replayed: boolean
  body: { id?: string; code?: string }
}

async function order(url: string, key: string, delayMs = 0, user = 'alice'): Promise<Reply> {
  const response = await fetch(`${url}/orders?delayMs=${delayMs}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key, authorization: `Bearer ${user}` },
    body: JSON.stringify({ item: 'book', quantity: 1 }),
  })
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed') === 'true',
    body: (await response.json()) as Reply['body'],
  }
}

describe(`${FRAMEWORKS.length} processes sharing one Redis`, () => {
  it(`run the handler exactly once for ${DUPLICATES} concurrent duplicates; every other answer is the replay or 409`, async () => {
    const before = await counter('executed')
    const replies = await Promise.all(
      Array.from({ length: DUPLICATES }, (_, i) => order(urls[i % urls.length]!, 'burst-key', 400)),
    )
    expect((await counter('executed')) - before).toBe(1)
    const fresh = replies.filter((r) => r.status === 201 && !r.replayed)
    expect(fresh).toHaveLength(1)
    const replays = replies.filter((r) => r.status === 201 && r.replayed)
    const conflicts = replies.filter((r) => r.status === 409)
    expect(replays.length + conflicts.length).toBe(DUPLICATES - 1)
    for (const replay of replays) expect(replay.body.id).toBe(fresh[0]!.body.id)
    for (const conflict of conflicts) expect(conflict.body.code).toBe('BW_IDEMPOTENCY_IN_PROGRESS')
    // Once it is done, every process replays the one stored response.
    const after = await Promise.all(urls.map((url) => order(url, 'burst-key')))
    for (const reply of after)
      expect(reply).toMatchObject({ status: 201, replayed: true, body: { id: fresh[0]!.body.id } })
  })

  it('execute the same key separately for another caller', async () => {
    const alice = await order(urls[0]!, 'scoped-key')
    const bob = await order(urls[1]!, 'scoped-key', 0, 'bob')
    expect(bob).toMatchObject({ status: 201, replayed: false })
    expect(bob.body.id).not.toBe(alice.body.id)
    expect((await order(urls[2]!, 'scoped-key', 0, 'bob')).body.id).toBe(bob.body.id)
  })

  it('keep the key of a process killed mid-request locked (409) for two lock TTLs, then execute a retry', async () => {
    const startedBefore = await counter('started')
    const executedBefore = await counter('executed')
    const victim = workers[0]!
    const doomed = order(urls[0]!, 'crash-key', 60_000).catch((error: unknown) => error)
    const deadline = Date.now() + 5000
    while ((await counter('started')) === startedBefore) {
      if (Date.now() > deadline) throw new Error('the handler never started')
      await sleep(10)
    }
    const claimedAt = Date.now()
    victim.kill('SIGKILL')
    expect(await doomed).toBeInstanceOf(Error) // the client saw the connection die
    const early = await order(urls[1]!, 'crash-key')
    expect(Date.now() - claimedAt).toBeLessThan(LOCK_TTL_MS)
    expect(early.status).toBe(409)
    await sleep(LOCK_TTL_MS - (Date.now() - claimedAt) + 100)
    // The first retry past the lapse renews the lock once (its owner could be alive with a stalled store)…
    const renewedAt = Date.now()
    expect((await order(urls[2]!, 'crash-key')).status).toBe(409)
    await sleep(LOCK_TTL_MS - (Date.now() - renewedAt) + 100)
    // …and nobody completed it within that second period: the owner is gone, a retry executes.
    const retry = await order(urls[2]!, 'crash-key')
    expect(retry).toMatchObject({ status: 201, replayed: false })
    expect((await counter('started')) - startedBefore).toBe(2)
    expect((await counter('executed')) - executedBefore).toBe(1)
    expect(await order(urls[3]!, 'crash-key')).toMatchObject({
      status: 201,
      replayed: true,
      body: { id: retry.body.id },
    })
  })
})
