// Reads of a node:http response that do not look anything up along its prototype chain. Express gives every
// response a prototype of its own app's, and on those objects each inherited method or getter (`res.on`,
// `res.closed`, `res.writableFinished`) cost thousands of instructions per request, counted under callgrind —
// more than the rest of a request's lifecycle. Node's own functions, called directly, read only the response's
// own fields. Other responses (HTTP/2 compatibility, test doubles) are read the ordinary way.

import { EventEmitter } from 'node:events'
import { OutgoingMessage, type ServerResponse } from 'node:http'

const outgoing = OutgoingMessage.prototype
const getterOf = (name: string): (() => boolean) | undefined =>
  Object.getOwnPropertyDescriptor(outgoing, name)?.get as (() => boolean) | undefined
const closedGetter = getterOf('closed')
const writableFinishedGetter = getterOf('writableFinished')
const writableEndedGetter = getterOf('writableEnded')
const addListener = EventEmitter.prototype.on

/** `res[name]`, through Node's own getter on a node:http response, else as an ordinary property. */
function readFlag(res: ServerResponse, getter: (() => boolean) | undefined, name: 'closed' | 'writableEnded'): boolean {
  return getter !== undefined && res instanceof OutgoingMessage ? getter.call(res) : res[name]
}

/** Whether `res` has emitted `close` (node:http) or is closed. */
export function responseClosed(res: ServerResponse): boolean {
  return readFlag(res, closedGetter, 'closed')
}

/**
 * Whether `res` was written in full before it closed (`writableFinished`). An HTTP/2 compatibility response whose
 * stream the client cancelled reports `writableFinished` (its stream's) but not `finished` (its own end()).
 */
export function responseFinished(res: ServerResponse): boolean {
  if (writableFinishedGetter !== undefined && res instanceof OutgoingMessage) return writableFinishedGetter.call(res)
  const other = res as Pick<ServerResponse, 'writableFinished' | 'finished'>
  return other.writableFinished && other.finished !== false
}

/**
 * Whether `res.end()` has been called (`writableEnded`): the whole response is in Node's hands, even if not yet
 * flushed. An adapter whose handler returned with the response ended needs no `close` listener to time it.
 *
 * @example
 * next()
 * handlerSettled(context, responseEnded(res))
 */
export function responseEnded(res: ServerResponse): boolean {
  return readFlag(res, writableEndedGetter, 'writableEnded')
}

/** `res.on('close', listener)`. */
export function onResponseClose(res: ServerResponse, listener: (this: ServerResponse) => void): void {
  if (res instanceof OutgoingMessage) addListener.call(res, 'close', listener)
  else (res as Pick<ServerResponse, 'on'>).on('close', listener)
}

/**
 * Make `res` ready for a problem answered in place of the handler's response (at the deadline, on shutdown).
 * Headers set so far are removed: the ETag, Location or cookies a handler had set for its 201 describe a
 * response that never goes out, and an ETag stale on a 503 can even be revalidated as fresh. Kept: CORS
 * (`Access-Control-*`, `Vary`), so a browser can still read the 503, and the `RateLimit` fields earlier
 * policies set. When the request body is still arriving (a client trickling it), `Connection: close` goes with
 * the answer, or Node keeps reading that body for as long as the client cares to send it.
 *
 * @param headers the framework's own header store when it is not `res` (Fastify's reply), cleared likewise
 * @example
 * prepareRejection(res)
 * sendRejection(res, decision)
 */
export function prepareRejection(
  res: ServerResponse,
  headers?: { getHeaders(): Record<string, unknown>; removeHeader(name: string): unknown },
): void {
  for (const name of res.getHeaderNames()) if (!KEPT_ON_REJECTION.test(name)) res.removeHeader(name)
  if (headers !== undefined) {
    for (const name of Object.keys(headers.getHeaders())) if (!KEPT_ON_REJECTION.test(name)) headers.removeHeader(name)
  }
  if (res.req?.complete === false) res.setHeader('Connection', 'close')
}

/** Headers that stay on a problem answered in place of the handler's response (see {@link prepareRejection}). */
const KEPT_ON_REJECTION = /^(?:access-control-|vary$|ratelimit)/i
