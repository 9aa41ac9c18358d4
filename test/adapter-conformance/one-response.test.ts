// Exactly one well-formed HTTP response when a deadline or a shutdown hits a request, whatever policies guard its
// route: timeout × idempotency × load shedding × rate limit, on the memory store and on Redis, with a handler that
// writes late (signal ignored) and one that fails with its abort (signal honoured), on Express, Fastify and Koa.
// Every byte the server sends is read from a raw socket and must be one 503 problem+json, nothing before or after,
// carrying none of the headers the handler had set for its own response (a stale ETag or Location on a 503).

import { randomUUID } from 'node:crypto'
import { triggerShutdown } from '@breakwater/core'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testRedisUrl } from '../support/redis-server.js'
import { FRAMEWORKS, type Framework } from './apps.js'
import { COMBINATIONS, HANDLER_HEADERS, type MatrixApp, startMatrixApp } from './policy-matrix-apps.js'
import { exchange, parseOneResponse } from './raw-exchange.js'
import { STORES, type StoreKind, until } from './support.js'

const MODES = ['late', 'abort'] as const
const DEADLINE_MS = 150
/** The handlers hold past the deadline; `late` ones then write their 201, which must never reach the wire. */
const DEADLINE_HOLD_MS = 400
/** Under shutdown the deadline is far away and the handlers hold until the shutdown has answered them. */
const SHUTDOWN_TIMEOUT_MS = 10_000
const SHUTDOWN_HOLD_MS = 2000
/** How long after a handler's late write the socket is still read, for bytes that should never come. */
const QUIET_MS = 300

interface Target {
  framework: Framework
  store: StoreKind
  app: MatrixApp
}

let client: Redis
const deadlineApps: Target[] = []
const shutdownApps: Target[] = []

beforeAll(async () => {
  // The settings the README recommends.
  client = new Redis(testRedisUrl(), { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  await client.connect()
  for (const framework of FRAMEWORKS) {
    for (const store of STORES) {
      const options = { store, client }
      deadlineApps.push({
        framework,
        store,
        app: await startMatrixApp(framework, { ...options, timeoutMs: DEADLINE_MS }),
      })
      shutdownApps.push({
        framework,
        store,
        app: await startMatrixApp(framework, { ...options, timeoutMs: SHUTDOWN_TIMEOUT_MS }),
      })
    }
  }
})

afterAll(async () => {
  await Promise.all([...deadlineApps, ...shutdownApps].map(({ app }) => app.close()))
  await client?.quit()
})

interface Case {
  target: Target
  combination: (typeof COMBINATIONS)[number]
  mode: (typeof MODES)[number]
}

const casesOf = (targets: Target[]): Case[] =>
  targets.flatMap((target) =>
    COMBINATIONS.flatMap((combination) => MODES.map((mode) => ({ target, combination, mode }))),
  )

const nameOf = ({ target, combination, mode }: Case): string =>
  `${target.framework}/${target.store} idempotency=${combination[0]} shedding=${combination[1]} rateLimit=${combination[2]} handler=${mode}`

/** Send `item`'s request and hold its socket open until `listenUntil`. */
function send({ target, combination, mode }: Case, holdMs: number, listenUntil: number): Promise<Buffer> {
  return exchange(target.app.url, `/m/${combination}?mode=${mode}&holdMs=${holdMs}`, {
    headers: {
      'Content-Type': 'application/json',
      'Idempotency-Key': randomUUID(),
      Authorization: 'Bearer matrix',
    },
    body: JSON.stringify({ item: 'book' }),
    listenUntil,
  })
}

/**
 * What is wrong with `bytes` as one 503 problem+json with `code` and only its own headers, or `undefined` when
 * that is what they are.
 */
function problemOf(item: Case, bytes: Buffer, code: string): string | undefined {
  try {
    const parsed = parseOneResponse(bytes)
    const type = parsed.headers['content-type'] ?? ''
    const body = /^application\/problem\+json/.test(type) ? (JSON.parse(parsed.body) as { code?: string }) : {}
    const leaked = HANDLER_HEADERS.filter(([name, value]) => parsed.headers[name.toLowerCase()] === value)
    if (parsed.status === 503 && body.code === code && leaked.length === 0) return undefined
    const extra = leaked.length === 0 ? '' : ` with the handler's ${leaked.map(([name]) => name).join(', ')}`
    return `${nameOf(item)}: ${parsed.status} ${type}${extra} ${parsed.body.slice(0, 120)}`
  } catch (error) {
    return `${nameOf(item)}: ${(error as Error).message}`
  }
}

/** Every case answered by exactly one well-formed 503 with `code`; all the cases that were not, listed at once. */
function expectOneProblemEach(cases: Case[], received: Buffer[], code: string): void {
  const wrong = cases.map((item, i) => problemOf(item, received[i]!, code)).filter((why) => why !== undefined)
  expect(wrong).toEqual([])
}

describe('exactly one well-formed response at the deadline', () => {
  it('every framework, policy combination, store and handler kind → one 503 BW_TIMEOUT with only its own headers', async () => {
    const cases = casesOf(deadlineApps)
    const listenUntil = Date.now() + DEADLINE_HOLD_MS + QUIET_MS
    const received = await Promise.all(cases.map((item) => send(item, DEADLINE_HOLD_MS, listenUntil)))
    expectOneProblemEach(cases, received, 'BW_TIMEOUT')
  })
})

describe('exactly one well-formed response on shutdown', () => {
  // Shutdown is one-way for the process (this test file's): one trigger, every case of every framework in flight.
  it('every framework, policy combination, store and handler kind in flight → one 503 BW_SHUTDOWN with only its own headers', async () => {
    const cases = casesOf(shutdownApps)
    const listenUntil = Date.now() + SHUTDOWN_HOLD_MS + QUIET_MS
    const pending = Promise.all(cases.map((item) => send(item, SHUTDOWN_HOLD_MS, listenUntil)))
    const expected = COMBINATIONS.length * MODES.length
    await until(() => shutdownApps.every(({ app }) => app.started() === expected), SHUTDOWN_HOLD_MS - 200)
    triggerShutdown()
    const received = await pending
    expectOneProblemEach(cases, received, 'BW_SHUTDOWN')
  })
})
