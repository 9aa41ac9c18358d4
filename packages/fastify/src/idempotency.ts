// Fastify plugin for the core idempotency policy: one policy per route config, created once in `onRoute`; the
// decision runs in `preHandler` (the body is parsed by then) and the response is handed to the ticket in `onSend`.

import { Transform } from 'node:stream'
import {
  createIdempotency,
  type Idempotency,
  type IdempotencyDecision,
  type IdempotencyOptions,
  type IdempotencyTicket,
  isPromiseLike,
  type MaybePromise,
} from '@breakwater/core'
import type {
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  onErrorHookHandler,
  onSendHookHandler,
  preHandlerHookHandler,
  preParsingHookHandler,
} from 'fastify'
import fp from 'fastify-plugin'
import { policyOptions } from './register-options.js'
import { sendRejection, setHeader } from './reply.js'
import { requestView } from './request-view.js'

/** Plugin options: the default policy of every route, plus `global`. */
export interface FastifyIdempotencyOptions extends IdempotencyOptions {
  /** Cover every route whose method the policy covers (`true`, default), or only routes with `config.idempotency`. */
  global?: boolean
}

/** What a route's `config.idempotency` accepts: its own options (merged over the plugin's), or `false` for none. */
export type RouteIdempotencyConfig = IdempotencyOptions | false

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Per-route idempotency: options merged over the plugin's (e.g. `{ required: true }`), or `false` for none. */
    idempotency?: RouteIdempotencyConfig
  }
  interface FastifyRequest {
    /** @internal The response capture of a request that claimed its Idempotency-Key; `null` otherwise. */
    breakwaterIdempotency: IdempotencyTicket | null
    /** @internal The raw body of a request on an idempotent route, for a lossless fingerprint; `null` otherwise. */
    breakwaterRawBody: Buffer | null
  }
}

/** A route's decision hook, with its policy. */
type Hook = preHandlerHookHandler & { readonly policy: Idempotency }

const plugin: FastifyPluginCallback<FastifyIdempotencyOptions> = (fastify, options, done) => {
  const { global = true, ...base } = policyOptions(options)
  const globalHook = global ? hookFor(createIdempotency(base)) : undefined
  // Declared up front so every request object keeps one shape.
  if (!fastify.hasRequestDecorator('breakwaterIdempotency')) fastify.decorateRequest('breakwaterIdempotency', null)
  if (!fastify.hasRequestDecorator('breakwaterRawBody')) fastify.decorateRequest('breakwaterRawBody', null)
  const routes = new Map<RouteIdempotencyConfig, Hook>()
  fastify.addHook('onRoute', (route) => {
    const config = route.config?.idempotency
    if (config === false || (config === undefined && globalHook === undefined)) return
    let hook = globalHook as Hook
    if (config !== undefined) {
      hook = routes.get(config) ?? hookFor(createIdempotency({ ...base, ...config }))
      routes.set(config, hook)
    }
    const methods = [route.method].flat().filter((method) => hook.policy.covers(method))
    if (methods.length === 0) return
    // Last: after authentication and other preHandlers (a `scope` function may read what they set).
    // GET and HEAD requests carry no body to keep: their routes (Fastify parses none for them) skip the hook.
    if (methods.some((method) => method !== 'GET' && method !== 'HEAD')) {
      route.preParsing = [...listOf(route.preParsing), keepRawBody]
    }
    route.preHandler = [...listOf(route.preHandler), hook]
    route.onSend = [captureResponse, ...listOf(route.onSend)]
    route.onError = [releaseOnError, ...listOf(route.onError)]
  })
  done()
}

function listOf<T>(hooks: T | T[] | undefined): T[] {
  return hooks === undefined ? [] : ([hooks].flat() as T[])
}

function hookFor(policy: Idempotency): Hook {
  const breakwaterIdempotency: preHandlerHookHandler = (request, reply, done) => {
    let decision: MaybePromise<IdempotencyDecision>
    try {
      decision = policy.check(requestView(request, reply), request.body, request.breakwaterRawBody ?? undefined)
    } catch (error) {
      return done(error as Error) // a user's `scope` or `fingerprint` function threw: the error handler answers
    }
    if (isPromiseLike(decision)) decision.then((settled) => apply(settled, request, reply, done)).catch(done)
    else apply(decision, request, reply, done)
  }
  return Object.assign(breakwaterIdempotency, { policy })
}

function apply(
  decision: IdempotencyDecision,
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
): void {
  if (reply.sent) {
    // Another hook (a timeout, say) answered while the store was deciding: nothing will run.
    if (decision.action === 'execute') decision.ticket.abandon('aborted')
    return
  }
  if (decision.action === 'continue') done()
  else if (decision.action === 'reject') sendRejection(reply, decision)
  else if (decision.action === 'replay') {
    reply.code(decision.status)
    for (const [name, value] of decision.headers) setHeader(reply, name, value)
    reply.send(decision.body)
  } else {
    request.breakwaterIdempotency = decision.ticket
    done()
  }
}

/**
 * Keep a copy of the body's bytes as Fastify reads them, so the fingerprint sees the numbers as sent (the parsed
 * body has lost what JSON.parse cannot represent). Only requests with a body pay for it; Fastify's `bodyLimit`
 * still bounds what is read, and the copy stops growing past it.
 */
const keepRawBody: preParsingHookHandler = function breakwaterIdempotencyRawBody(request, _reply, payload, done) {
  const headers = request.headers
  if (headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) {
    return done(null, payload)
  }
  const limit = request.routeOptions.bodyLimit
  const chunks: Buffer[] = []
  let size = 0
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      size += chunk.length
      if (size <= limit) chunks.push(chunk)
      next(null, chunk)
    },
    flush(next) {
      if (size <= limit) request.breakwaterRawBody = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
      next()
    },
  })
  payload.on('error', (error) => tap.destroy(error))
  payload.pipe(tap)
  done(null, tap)
}

/** The serialized payload is final here: store it (the reply waits for the record) or release the key. */
const captureResponse: onSendHookHandler = function breakwaterIdempotencyCapture(request, reply, payload, done) {
  const ticket = request.breakwaterIdempotency
  if (ticket === null || ticket.settled) return done(null, payload)
  const stored = ticket.finish(reply.statusCode, (name) => reply.getHeader(name), payload)
  if (stored === undefined) done(null, payload)
  else stored.then(() => done(null, payload))
}

/** A thrown error is not a response to store, whatever status the error handler gives it. */
const releaseOnError: onErrorHookHandler = function breakwaterIdempotencyError(request, _reply, _error, done) {
  request.breakwaterIdempotency?.abandon('error')
  done()
}

/**
 * Fastify plugin: Idempotency-Key handling on every POST and PATCH route (the policy's `methods`), or, with
 * `global: false`, on routes with `config.idempotency`. Options are the defaults of every route's policy,
 * checked at registration (`BW_INVALID_OPTION`); routes override them with `config: { idempotency: { … } }` or
 * opt out with `config: { idempotency: false }`. The decision runs in `preHandler`, after body parsing and your
 * own preHandlers; the serialized response is stored in `onSend` before it goes out. A streamed payload or a
 * thrown error is not stored and frees the key.
 *
 * @example
 * await app.register(idempotency, { scope: (req) => req.header('authorization'), global: false })
 * app.post('/orders', { config: { idempotency: { required: true } } }, createOrder)
 */
export const idempotency = fp(plugin, { fastify: '5.x', name: '@breakwater/fastify-idempotency' })
