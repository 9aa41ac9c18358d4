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
    if (first) reply.header(name, value)
    else appendHeader(reply, name, value)
  }
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
