// The one error path, run against every adapter: Breakwater's errors and the body parsers' client errors answer
// problem+json with a stable code and no stack, the same on Express, Fastify and Koa; other errors stay the app's.
// Idempotency on the same apps: a lossless fingerprint (integers above 2^53) and cookies a handler really sets
// never replayed.

import { ErrorCode, PROBLEMS } from '@breakwater/core'
import { afterEach, describe, expect, it } from 'vitest'
import { FRAMEWORKS } from './apps.js'
import { BODY_LIMIT, type ErrorApp, startErrorApp } from './error-handler-apps.js'

const open: ErrorApp[] = []
afterEach(async () => {
  for (const app of open.splice(0)) await app.close()
})

async function start(framework: (typeof FRAMEWORKS)[number]): Promise<ErrorApp> {
  const app = await startErrorApp(framework)
  open.push(app)
  return app
}

interface Answer {
  status: number
  headers: Headers
  text: string
}

async function call(url: string, init?: RequestInit): Promise<Answer> {
  const response = await fetch(url, init)
  return { status: response.status, headers: response.headers, text: await response.text() }
}

const post = (app: ErrorApp, body: string, key = 'k1') =>
  call(`${app.url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `"${key}"` },
    body,
  })

function expectProblem(answer: Answer, status: number, code: ErrorCode): Record<string, unknown> {
  expect(answer.status).toBe(status)
  expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = JSON.parse(answer.text) as Record<string, unknown>
  // The problem type the registry gives the code: the same whichever policy or error path answered.
  expect(body).toMatchObject({ type: PROBLEMS[code].type, status, code })
  expect(typeof body.title).toBe('string')
  expect(answer.text).not.toMatch(/\bat .*\(|node_modules|\.js:\d+|<html/)
  return body
}

describe.each(FRAMEWORKS)('%s errorHandler', (framework) => {
  it('answers malformed JSON 400 BW_BAD_REQUEST and a body over the limit 413 BW_PAYLOAD_TOO_LARGE', async () => {
    const app = await start(framework)
    expectProblem(await post(app, '{"amount": 1,'), 400, ErrorCode.BadRequest)
    expectProblem(await post(app, JSON.stringify({ pad: 'x'.repeat(BODY_LIMIT) })), 413, ErrorCode.PayloadTooLarge)
    expect(app.executed()).toBe(0)
  })

  it('answers a DeadlineExceededError 504 and a Breakwater error with retryAfterSeconds 503 + Retry-After', async () => {
    const app = await start(framework)
    expectProblem(await call(`${app.url}/fail/deadline`), 504, ErrorCode.DeadlineExceeded)
    const busy = await call(`${app.url}/fail/busy`)
    const body = expectProblem(busy, 503, ErrorCode.Overloaded)
    expect(busy.headers.get('retry-after')).toBe('7')
    expect(body.detail).toBe('The pricing dependency is saturated.')
  })

  it('passes other errors on to the framework and the app, never as problem+json and never with their message', async () => {
    const app = await start(framework)
    const boom = await call(`${app.url}/fail/boom`)
    expect(boom.status).toBe(500)
    expect(boom.headers.get('content-type')).not.toMatch(/problem\+json/)
    if (framework === 'express') expect(boom.text).toBe('app handler')
  })

  it('fingerprints the raw body: 9007199254740992 after 9007199254740993 with the same key is 422, not a replay', async () => {
    const app = await start(framework)
    const first = await post(app, '{"amount":9007199254740993}', 'big')
    expect(first.status).toBe(201)
    expectProblem(await post(app, '{"amount":9007199254740992}', 'big'), 422, ErrorCode.IdempotencyMismatch)
    expect(app.executed()).toBe(1)
  })

  it('never replays the cookie the handler set: the first answer has Set-Cookie, the replay none', async () => {
    const app = await start(framework)
    const first = await post(app, '{"amount":5}', 'cookie')
    expect(first.status).toBe(201)
    expect(first.headers.get('set-cookie')).toMatch(/^session=s1;.*HttpOnly/i)
    const replay = await post(app, '{"amount":5}', 'cookie')
    expect(replay.status).toBe(201)
    expect(replay.headers.get('idempotent-replayed')).toBe('true')
    expect(replay.headers.get('set-cookie')).toBeNull()
    expect(replay.text).toBe(first.text)
    expect(app.executed()).toBe(1)
  })
})
