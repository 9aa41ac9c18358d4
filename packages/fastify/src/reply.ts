// Turns a policy's decision into a Fastify reply: headers appended for `continue`, the problem+json reply for
// `reject`, both through `reply` so onSend hooks, error handlers and the logger see them.

import type { HeaderList, RejectDecision } from '@breakwater/core'
import type { FastifyReply } from 'fastify'

/**
 * Append `headers` to the reply. A field that is already set is extended with `, ` (several limiters add
 * items to the same `RateLimit` / `RateLimit-Policy` lists), never overwritten. `first` says no Breakwater
 * policy has added headers to this reply yet, so there is nothing to extend and no lookup is needed.
 *
 * @example
 * appendHeaders(reply, [['RateLimit', '"default";r=9;t=6']], true)
 */
export function appendHeaders(reply: FastifyReply, headers: HeaderList, first: boolean): void {
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i] as HeaderList[number]
    if (first) setHeader(reply, name, value)
    else appendHeader(reply, name, value)
  }
}

/** Lower-case forms of the field names Breakwater sends: a handful, so the cache stays tiny. */
const LOWER_CASE = new Map<string, string>()
const LOWER_CASE_MAX = 64

/**
 * `reply.header(name, value)` with `name` already in lower case. Fastify lower-cases every field name it is given,
 * and Node lower-cases some again while writing them; handing both a lower-case name spares each request two
 * string conversions per field (about 1.3k instructions for the two `RateLimit` fields, measured). The wire is
 * unchanged: Fastify sends lower-case names anyway.
 *
 * @example
 * setHeader(reply, 'Retry-After', '5') // sends `retry-after: 5`
 */
export function setHeader(reply: FastifyReply, name: string, value: string): void {
  let lower = LOWER_CASE.get(name)
  if (lower === undefined) {
    lower = name.toLowerCase()
    if (LOWER_CASE.size < LOWER_CASE_MAX) LOWER_CASE.set(name, lower)
  }
  reply.header(lower, value)
}

/**
 * Send a rejection: its status, its headers (appended to any set earlier), and its problem+json body.
 *
 * @example
 * if (decision.action === 'reject') return sendRejection(reply, decision)
 */
export function sendRejection(reply: FastifyReply, decision: RejectDecision): void {
  reply.code(decision.status)
  for (const [name, value] of decision.headers) {
    if (name === 'Content-Type') setHeader(reply, name, value)
    else appendHeader(reply, name, value)
  }
  reply.send(JSON.stringify(decision.body))
}

function appendHeader(reply: FastifyReply, name: string, value: string): void {
  const previous = reply.getHeader(name)
  setHeader(reply, name, previous === undefined ? value : `${String(previous)}, ${value}`)
}
