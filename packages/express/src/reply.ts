// Turns a policy's decision into an Express response: headers appended for `continue`, the problem+json
// reply for `reject`, both through Express's own `res` so user hooks and loggers see them.

import type { HeaderList, RejectDecision } from '@breakwater/core'
import type { Response } from 'express'

/**
 * Append `headers` to the response. A field that is already set is extended with `, ` (several limiters add
 * items to the same `RateLimit` / `RateLimit-Policy` lists), never overwritten. `first` says no Breakwater
 * policy has added headers to this response yet, so there is nothing to extend and no lookup is needed.
 *
 * @example
 * appendHeaders(res, [['RateLimit', '"default";r=9;t=6']], true)
 */
export function appendHeaders(res: Response, headers: HeaderList, first: boolean): void {
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i] as HeaderList[number]
    if (first) res.setHeader(name, value)
    else appendHeader(res, name, value)
  }
}

/**
 * Send a rejection: its status, its headers (appended to any set earlier), and its problem+json body.
 *
 * @example
 * if (decision.action === 'reject') return sendRejection(res, decision)
 */
export function sendRejection(res: Response, decision: RejectDecision): void {
  res.status(decision.status)
  for (const [name, value] of decision.headers) {
    if (name === 'Content-Type') res.set(name, value)
    else appendHeader(res, name, value)
  }
  res.send(JSON.stringify(decision.body))
}

function appendHeader(res: Response, name: string, value: string): void {
  const previous = res.getHeader(name)
  res.setHeader(name, previous === undefined ? value : `${String(previous)}, ${value}`)
}
