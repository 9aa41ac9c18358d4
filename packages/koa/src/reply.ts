// Turns a policy's decision into a Koa response: headers appended for `continue`, the problem+json reply for
// `reject`, set on `ctx` like any Koa middleware's answer so upstream middleware and loggers see them.

import type { HeaderList, RejectDecision } from '@breakwater/core'
import type { Context } from 'koa'

/**
 * Append `headers` to the response. A field that is already set is extended with `, ` (several limiters add
 * items to the same `RateLimit` / `RateLimit-Policy` lists), never overwritten. `first` says no Breakwater
 * policy has added headers to this response yet, so there is nothing to extend and no lookup is needed.
 *
 * @example
 * appendHeaders(ctx, [['RateLimit', '"default";r=9;t=6']], true)
 */
export function appendHeaders(ctx: Context, headers: HeaderList, first: boolean): void {
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i] as HeaderList[number]
    if (first) ctx.set(name, value)
    else appendHeader(ctx, name, value)
  }
}

/**
 * Answer with a rejection: its status, its headers (appended to any set earlier), its problem+json body.
 *
 * @example
 * if (decision.action === 'reject') return sendRejection(ctx, decision)
 */
export function sendRejection(ctx: Context, decision: RejectDecision): void {
  ctx.status = decision.status
  for (const [name, value] of decision.headers) {
    if (name === 'Content-Type') ctx.type = value
    else appendHeader(ctx, name, value)
  }
  ctx.body = JSON.stringify(decision.body)
}

function appendHeader(ctx: Context, name: string, value: string): void {
  const previous = ctx.res.getHeader(name)
  ctx.set(name, previous === undefined ? value : `${String(previous)}, ${value}`)
}

/**
 * A Node stream, a web ReadableStream, a Blob or a Response: bodies Koa streams after the middleware chain
 * settles, rather than writing them at once.
 *
 * @example
 * if (isStreamedBody(ctx.body)) return // still being written after the handler
 */
export function isStreamedBody(body: unknown): boolean {
  if (typeof body !== 'object' || body === null) return false
  const candidate = body as { pipe?: unknown; getReader?: unknown; stream?: unknown; arrayBuffer?: unknown }
  return (
    typeof candidate.pipe === 'function' ||
    typeof candidate.getReader === 'function' ||
    typeof candidate.stream === 'function' ||
    typeof candidate.arrayBuffer === 'function'
  )
}
