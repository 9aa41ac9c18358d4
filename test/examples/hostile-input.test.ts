// Hostile clients against the example apps users copy (issue 15, findings 3–7): every bad body is answered with
// problem+json and a stable code, the same on all three frameworks, with no stack trace or file path; a client
// disconnecting on purpose leaves nothing in the logs; a Redis outage prints no "Unhandled error event".

import { randomInt } from 'node:crypto'
import http from 'node:http'
import { describe, expect, it } from 'vitest'
import { sleep, startRedis } from '../support/redis-server.js'
import { FRAMEWORKS, startExample, useExamples } from './example-process.js'

useExamples()

/** As users run them: Express prints errors and stack pages only outside NODE_ENV=test (vitest's). */
const AS_USERS_RUN = { NODE_ENV: 'development' }

interface Answer {
  status: number
  headers: Headers
  text: string
}

async function order(url: string, body: string, key = `k-${randomInt(1e9)}`, method = 'POST'): Promise<Answer> {
  const response = await fetch(`${url}/api/orders`, {
    method,
    headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"`, authorization: 'Bearer mallory' },
    body: method === 'GET' || method === 'HEAD' ? undefined : body,
  })
  return { status: response.status, headers: response.headers, text: await response.text() }
}

/** A problem+json answer with this status and code, and nothing that reveals the server's insides. */
function expectProblem(answer: Answer, status: number, code: string): void {
  expect(answer.status).toBe(status)
  expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = JSON.parse(answer.text) as Record<string, unknown>
  expect(body).toMatchObject({ type: 'about:blank', status, code })
  expect(answer.text).not.toMatch(/\bat .*\(|node_modules|\/src\/|\.js:\d+|<html|<pre/i)
}

/** Start a request and drop the connection after `ms`, as a client giving up (or a flood of them) would. */
function abandon(url: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const request = http.get(url, { agent: false })
    request.on('error', () => resolve())
    request.on('response', () => resolve())
    setTimeout(() => {
      request.destroy()
      resolve()
    }, ms)
  })
}

describe.each(FRAMEWORKS)('examples/%s against hostile input', (framework) => {
  it('answers invalid JSON 400, a 300 KB body 413, 20,000 nested arrays 413 and an unknown method 405, as problem+json', async () => {
    const example = await startExample(framework, AS_USERS_RUN)
    expectProblem(await order(example.url, '{"item": '), 400, 'BW_BAD_REQUEST')
    expectProblem(await order(example.url, JSON.stringify({ pad: 'x'.repeat(300_000) })), 413, 'BW_PAYLOAD_TOO_LARGE')
    const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`
    expectProblem(await order(example.url, deep), 413, 'BW_IDEMPOTENCY_PAYLOAD_TOO_COMPLEX')
    for (const method of ['PUT', 'DELETE']) {
      const answer = await order(example.url, '{}', undefined, method)
      expectProblem(answer, 405, 'BW_METHOD_NOT_ALLOWED')
      expect(answer.headers.get('allow')).toBe('POST')
    }
    // The server is fine afterwards, and no handler ran for any of them.
    expect((await order(example.url, '{"item":"book"}')).status).toBe(201)
    expect(await (await fetch(`${example.url}/debug/stats`)).json()).toMatchObject({ ordersExecuted: 1 })
    expect(example.output()).not.toMatch(/RangeError|stack size/)
  })

  it('tells apart amounts above 2^53 that JSON.parse merges: the same key with 9007199254740992 after …993 is 422', async () => {
    const example = await startExample(framework, AS_USERS_RUN)
    const key = `big-${randomInt(1e9)}`
    expect((await order(example.url, '{"amount":9007199254740993}', key)).status).toBe(201)
    expectProblem(await order(example.url, '{"amount":9007199254740992}', key), 422, 'BW_IDEMPOTENCY_MISMATCH')
    // Key order and spacing still do not matter.
    const again = await order(example.url, '{ "amount" : 9007199254740993 }', key)
    expect(again.status).toBe(201)
    expect(again.headers.get('idempotent-replayed')).toBe('true')
  })

  it('logs nothing when clients disconnect during GET /api/slow (30 of them)', async () => {
    const example = await startExample(framework, AS_USERS_RUN)
    const before = example.output().length
    // The route's budget is 200 ms: the clients leave at 120 ms, while their handlers still wait.
    await Promise.all(Array.from({ length: 30 }, () => abandon(`${example.url}/api/slow?ms=180`, 120)))
    await sleep(400) // the handlers' aborts have surfaced by now
    const stats = (await (await fetch(`${example.url}/debug/stats`)).json()) as Record<string, number>
    expect(stats.slowStarted).toBeGreaterThan(0) // the handlers ran and were aborted…
    expect(stats.slowAborted).toBe(stats.slowStarted)
    expect(example.output().slice(before)).toBe('') // …and left no trace in the logs
  })
})

describe.each(FRAMEWORKS)('examples/%s during a Redis outage', (framework) => {
  it('logs the outage in a line or two, never "Unhandled error event", and answers 503 problem+json meanwhile', async () => {
    const redis = await startRedis()
    try {
      const example = await startExample(framework, { ...AS_USERS_RUN, REDIS_URL: redis.url })
      expect((await order(example.url, '{"item":"book"}')).status).toBe(201)
      await redis.stop()
      await sleep(1_500) // ioredis retries and fails several times meanwhile
      expectProblem(await order(example.url, '{"item":"book"}'), 503, 'BW_STORE_UNAVAILABLE')
      const output = example.output()
      expect(output).not.toMatch(/Unhandled error event/)
      expect(output.match(/redis unavailable/g)).toHaveLength(1)
    } finally {
      await redis.stop()
    }
  })
})
