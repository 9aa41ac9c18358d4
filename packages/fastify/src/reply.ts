// Turns a policy's decision into a Fastify reply: headers appended for `continue`, the problem+json reply for
// `reject`, both through `reply` so onSend hooks, error handlers and the logger see them.

import type { HeaderList, RejectDecision } from '@breakwater/core'
import type { FastifyReply } from 'fastify'

/**
 * Append `headers` to the reply. A field that is already set is extended with `, ` (several limiters add
 * items to the same `RateLimit` / `RateLimit-Policy` lists), never overwritten.
 *
 * @example
 * appendHeaders(reply, [['RateLimit', '"default";r=9;t=6']])
 */
export function appendHeaders(reply: FastifyReply, headers: HeaderList): void {
  for (const [name, value] of headers) appendHeader(reply, name, value)
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
    if (name === 'Content-Type') reply.header(name, value)
    else appendHeader(reply, name, value)
  }
  reply.send(JSON.stringify(decision.body))
}

function appendHeader(reply: FastifyReply, name: string, value: string): void {
  const previous = reply.getHeader(name)
  reply.header(name, previous === undefined ? value : `${String(previous)}, ${value}`)
}
