// After a request has been answered at its deadline, its handler may still write: turn those writes into no-ops
// reported once, so they cannot throw ERR_HTTP_HEADERS_SENT, emit write-after-end errors or corrupt the response.

import type { ServerResponse } from 'node:http'
import type { RequestContext } from './request-context.js'
import { existingRequestContext, reportLateWrite } from './response-lifecycle.js'

type Method = (this: ServerResponse, ...args: unknown[]) => unknown

/** On a guarded response: the context its late writes are reported to (`null` when it has none). */
const GUARDED = Symbol('breakwater.lateWritesGuarded')

/** Response methods a late handler may call, and what each no-op returns so callers carry on unharmed. */
const NO_OPS: Record<string, Method> = {
  writeHead: returnThis('writeHead'),
  setHeader: returnThis('setHeader'),
  setHeaders: returnThis('setHeaders'),
  appendHeader: returnThis('appendHeader'),
  removeHeader: returnNothing('removeHeader'),
  flushHeaders: returnNothing('flushHeaders'),
  writeContinue: returnNothing('writeContinue'),
  writeProcessing: returnNothing('writeProcessing'),
  writeEarlyHints: returnNothing('writeEarlyHints'),
  write: callingBack('write', true),
  end: callingBack('end', undefined),
}

/**
 * Make every later write to `res` a harmless no-op, reported once on `breakwater:timeout:late-write`. Call it
 * right after the deadline's answer has been written (synchronously, e.g. Express's `res.send`), never before.
 * Callbacks passed to `write`/`end` still run, so piping streams finish instead of hanging. Only the timeout path
 * pays for this: the methods are replaced on that one response object. `context` is the request's lifecycle the
 * reports go to (default: the one kept on `res` by `requestContext(res)`).
 *
 * @example
 * sendRejection(res, decision)
 * guardLateWrites(res, context)
 */
export function guardLateWrites(res: ServerResponse, context?: RequestContext): void {
  const target = res as unknown as Record<string | symbol, unknown>
  if (target[GUARDED] !== undefined) return
  target[GUARDED] = context ?? existingRequestContext(res) ?? null
  for (const name in NO_OPS) target[name] = NO_OPS[name]
}

function report(res: ServerResponse, operation: string): void {
  const context = (res as unknown as Record<symbol, RequestContext | null>)[GUARDED]
  if (context) reportLateWrite(context, operation)
}

function returnThis(operation: string): Method {
  return function lateWrite(this: ServerResponse) {
    report(this, operation)
    return this
  }
}

function returnNothing(operation: string): Method {
  return function lateWrite(this: ServerResponse) {
    report(this, operation)
    return undefined
  }
}

function callingBack(operation: string, result: true | undefined): Method {
  return function lateWrite(this: ServerResponse, ...args: unknown[]) {
    report(this, operation)
    const callback = args[args.length - 1]
    if (typeof callback === 'function') process.nextTick(callback as () => void)
    return result === undefined ? this : result
  }
}
