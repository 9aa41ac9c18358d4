// One dispatch to a protected origin: the controller the caller's handler sees, the attempts the dependency's
// policies run (one attempt = one dispatch, settled when its response headers arrive), and the hand-over of the
// accepted attempt's response — headers, the body chunks buffered meanwhile, then the live stream.

import type { CallerContext, Dependency, ExecuteContext, ExecuteOptions } from '@breakwater/core'
import {
  type BodyKind,
  BUFFERABLE,
  bufferBody,
  ONE_SHOT,
  type RequestHeaders,
  resumeBody,
  withHeaders,
} from './request-shape.js'

/** The controller undici hands a handler (undici 7's `Dispatcher.DispatchController`). */
export interface Controller {
  readonly aborted: boolean
  readonly paused: boolean
  readonly reason: Error | null
  abort(reason: Error): void
  pause(): void
  resume(): void
}

type Headers = Record<string, string | string[] | undefined>

/** undici 7's handler interface (the one `compose` hands an interceptor: it wraps older handlers into it). */
export interface Handler {
  onRequestStart?(controller: Controller, context: unknown): void
  onResponseStart?(controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void
  onResponseData?(controller: Controller, chunk: Buffer): void
  onResponseEnd?(controller: Controller, trailers: Headers): void
  onResponseError?(controller: Controller, error: Error): void
}

export interface DispatchOptions {
  origin?: string | URL
  path: string
  method: string
  headers?: RequestHeaders
  body?: unknown
  [option: string]: unknown
}

export type Dispatch = (options: DispatchOptions, handler: Handler) => boolean

/** A caller context as `context()` returns it: the timeout policy's `RequestContext` or the same shape. */
export interface CallContext extends CallerContext {
  /** Headers that carry the remaining budget to the next hop (`RequestContext.forwardHeaders()`). */
  forwardHeaders?(): Record<string, string>
}

/** Settings shared by every call of one interceptor. */
export interface CallSettings {
  readonly maxReplayBodyBytes: number
  readonly maxDumpBytes: number
}

// Attempt states.
const RUNNING = 0
const ACCEPTED = 1
const DISCARDED = 2

class Attempt implements Handler {
  state = RUNNING
  controller: Controller | undefined = undefined
  responded = false
  statusCode = 0
  headers: Headers = {}
  statusMessage: string | undefined = undefined
  /** Chunks that arrived after the headers and before the policies decided (pause is advisory). */
  chunks: Buffer[] | undefined = undefined
  trailers: Headers | undefined = undefined
  error: Error | undefined = undefined
  /** What the retry discards: undici's `request()` result shape, so core's `discardResult` frees it. */
  readonly body: { dump(): Promise<void>; destroy(): void }
  #dumped = 0
  #buffered = 0
  readonly #call: Call
  readonly #signal: AbortSignal
  #resolve: ((attempt: Attempt) => void) | undefined
  #reject: ((error: unknown) => void) | undefined
  #onAbort: (() => void) | undefined = undefined

  constructor(call: Call, signal: AbortSignal, resolve: (attempt: Attempt) => void, reject: (e: unknown) => void) {
    this.#call = call
    this.#signal = signal
    this.#resolve = resolve
    this.#reject = reject
    this.body = {
      dump: () => {
        this.discard()
        return Promise.resolve()
      },
      destroy: () => this.discard(),
    }
  }

  start(dispatch: Dispatch, options: DispatchOptions): void {
    const signal = this.#signal
    if (signal.aborted) {
      this.#fail(signal.reason)
      return
    }
    // The policies abort the attempt's signal on an attempt timeout, the caller's abort or a lost hedge.
    this.#onAbort = () => this.#aborted(signal.reason)
    signal.addEventListener('abort', this.#onAbort, { once: true })
    try {
      dispatch(options, this)
    } catch (error) {
      this.#fail(error)
    }
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller
    if (this.state === DISCARDED) controller.abort(discardedError())
  }

  onResponseStart(controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    this.controller = controller
    this.responded = true
    this.statusCode = statusCode
    this.headers = headers
    this.statusMessage = statusMessage
    if (this.state === DISCARDED) {
      this.#dump(controller)
      return
    }
    // Nothing of this response reaches the caller until the policies accept it. A small body is read meanwhile
    // (a retried 503 then frees its connection while the retry waits); a larger one waits paused.
    const length = Number(headers['content-length'] ?? Number.NaN)
    if (!(length <= this.#call.settings.maxDumpBytes)) controller.pause()
    const resolve = this.#resolve
    this.#resolve = undefined
    this.#reject = undefined
    resolve?.(this)
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.state === ACCEPTED) {
      // Chunks still waiting to be handed on (the caller paused mid-flush) go first.
      if (this.chunks !== undefined && this.chunks.length > 0) this.chunks.push(chunk)
      else this.#call.data(chunk)
      return
    }
    if (this.state === DISCARDED) {
      this.#dumped += chunk.length
      if (this.#dumped > this.#call.settings.maxDumpBytes) controller.abort(discardedError())
      return
    }
    // Bounded by maxDumpBytes, plus what undici had already read when it was paused: one socket read.
    if (this.chunks === undefined) this.chunks = [chunk]
    else this.chunks.push(chunk)
    this.#buffered += chunk.length
    if (this.#buffered > this.#call.settings.maxDumpBytes && !controller.paused) controller.pause()
  }

  onResponseEnd(_controller: Controller, trailers: Headers): void {
    this.#unlisten()
    if (this.state === ACCEPTED && !(this.chunks !== undefined && this.chunks.length > 0)) this.#call.end(trailers)
    else if (this.state !== DISCARDED) this.trailers = trailers
  }

  onResponseError(_controller: Controller, error: Error): void {
    this.#unlisten()
    if (this.state === ACCEPTED && !(this.chunks !== undefined && this.chunks.length > 0)) {
      this.#call.error(error)
      return
    }
    if (this.state === DISCARDED) return
    if (this.responded) this.error = error
    else this.#fail(error)
  }

  /** The policies took this attempt's response as the call's answer. */
  accept(): void {
    this.state = ACCEPTED
    this.#unlisten()
  }

  /**
   * Free an attempt that will not be the answer (a retried response, a hedge that lost, the rest when the call
   * settles): a response already started is read and dropped up to `maxDumpBytes`, so its connection returns to
   * the pool; anything else is aborted, which closes its socket.
   */
  discard(): void {
    if (this.state !== RUNNING) return
    this.state = DISCARDED
    this.#unlisten()
    this.chunks = undefined
    const controller = this.controller
    if (controller === undefined) return // aborted in onRequestStart
    if (!this.responded) controller.abort(discardedError())
    else if (this.trailers === undefined && this.error === undefined) this.#dump(controller)
  }

  #dump(controller: Controller): void {
    const length = Number(this.headers['content-length'] ?? Number.NaN)
    if (length > this.#call.settings.maxDumpBytes) controller.abort(discardedError())
    else controller.resume()
  }

  #aborted(reason: unknown): void {
    if (this.state !== RUNNING) return
    if (!this.responded) {
      this.#fail(reason)
      this.state = DISCARDED
      this.controller?.abort(reason instanceof Error ? reason : discardedError())
      return
    }
    this.discard()
  }

  #fail(error: unknown): void {
    this.#unlisten()
    const reject = this.#reject
    this.#resolve = undefined
    this.#reject = undefined
    reject?.(error)
  }

  #unlisten(): void {
    if (this.#onAbort === undefined) return
    this.#signal.removeEventListener('abort', this.#onAbort)
    this.#onAbort = undefined
  }
}

/** @internal One call through the interceptor; also the controller its caller's handler gets. */
export class Call implements Controller {
  readonly settings: CallSettings
  readonly #dispatch: Dispatch
  readonly #options: DispatchOptions
  readonly #handler: Handler
  readonly #context: CallContext | undefined
  readonly #controller = new AbortController()
  #attempts: Attempt[] = []
  #winner: Attempt | undefined = undefined
  #body: unknown
  #bodyKind: BodyKind
  #bodySent = false
  #paused = false
  #done = false
  #flushing = false
  #reason: Error | null = null
  #onContextAbort: (() => void) | undefined = undefined

  constructor(
    dispatch: Dispatch,
    options: DispatchOptions,
    handler: Handler,
    context: CallContext | undefined,
    bodyKind: BodyKind,
    settings: CallSettings,
  ) {
    this.#dispatch = dispatch
    this.#options = options
    this.#handler = handler
    this.#context = context
    this.#body = options.body
    this.#bodyKind = bodyKind
    this.settings = settings
  }

  start(dependency: Dependency, idempotent: boolean): void {
    // The caller's handler gets its controller now, so an abort during a backoff or a queue wait reaches us.
    this.#handler.onRequestStart?.(this, undefined)
    if (this.#done) return
    const context = this.#context
    if (context !== undefined) {
      const signal = context.signal
      if (signal.aborted) {
        this.abort(signal.reason)
        return
      }
      this.#onContextAbort = () => this.abort(signal.reason)
      signal.addEventListener('abort', this.#onContextAbort, { once: true })
    }
    if (this.#bodyKind === BUFFERABLE) {
      bufferBody(this.#body as AsyncIterable<unknown>, this.settings.maxReplayBodyBytes).then(
        (read) => {
          if ('complete' in read) {
            this.#body = read.complete
            this.#bodyKind = 0
            this.#run(dependency, idempotent)
          } else {
            // The body was longer than its content-length said: sent once, as it came.
            this.#body = resumeBody(read.partial, read.rest)
            this.#bodyKind = ONE_SHOT
            this.#run(dependency, false)
          }
        },
        (error: unknown) => this.#failed(error),
      )
      return
    }
    this.#run(dependency, idempotent && this.#bodyKind !== ONE_SHOT)
  }

  #run(dependency: Dependency, idempotent: boolean): void {
    if (this.#done) return
    const context = this.#context
    const options: ExecuteOptions & { idempotent: boolean } = {
      signal: this.#controller.signal,
      deadline: context?.deadline,
      idempotent,
    }
    dependency
      .execute((attempt) => this.#attempt(attempt), options)
      .then(
        (attempt) => this.#accepted(attempt),
        (error: unknown) => this.#failed(error),
      )
  }

  #attempt(context: ExecuteContext): Promise<Attempt> {
    if (this.#bodyKind === ONE_SHOT) {
      if (this.#bodySent)
        return Promise.reject(new Error('A request body that was streamed once cannot be sent again.'))
      this.#bodySent = true
    }
    return new Promise<Attempt>((resolve, reject) => {
      const attempt = new Attempt(this, context.signal, resolve, reject)
      this.#attempts.push(attempt)
      attempt.start(this.#dispatch, this.#optionsFor(context))
    })
  }

  /** The dispatch options of one attempt: the replayable body, and the remaining budget for the next hop. */
  #optionsFor(attempt: ExecuteContext): DispatchOptions {
    const forward = this.#context?.forwardHeaders?.()
    const options = this.#options
    if (forward === undefined || Object.keys(forward).length === 0) {
      return this.#body === options.body ? options : { ...options, body: this.#body }
    }
    // The next hop's budget is what this attempt has left: the attempt timeout may be shorter than the request's.
    const attemptLeft = Math.max(0, Math.floor(attempt.deadline - Date.now()))
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(forward)) {
      const ms = Number(value)
      headers[name] = Number.isFinite(ms) && attemptLeft < ms ? String(attemptLeft) : value
    }
    return { ...options, body: this.#body, headers: withHeaders(options.headers, headers) }
  }

  #accepted(winner: Attempt): void {
    if (this.#done) {
      winner.discard()
      return
    }
    winner.accept()
    this.#winner = winner
    this.#discardOthers(winner)
    const controller = winner.controller as Controller
    if (this.#paused) controller.pause()
    this.#handler.onResponseStart?.(this, winner.statusCode, winner.headers, winner.statusMessage)
    this.#flush()
  }

  /** Hand the accepted attempt's buffered chunks, end or error on, then let its stream flow. */
  #flush(): void {
    const winner = this.#winner as Attempt
    this.#flushing = true
    const chunks = winner.chunks
    while (chunks !== undefined && chunks.length > 0 && !this.#paused && !this.#done) {
      this.#handler.onResponseData?.(this, chunks.shift() as Buffer)
    }
    this.#flushing = false
    if (this.#paused || this.#done) return
    winner.chunks = undefined
    if (winner.trailers !== undefined) this.end(winner.trailers)
    else if (winner.error !== undefined) this.error(winner.error)
    else winner.controller?.resume()
  }

  #failed(error: unknown): void {
    if (this.#done) return
    this.#discardOthers(undefined)
    this.#finish()
    const reason = this.#reason ?? (error instanceof Error ? error : new Error(String(error)))
    this.#handler.onResponseError?.(this, reason)
  }

  #discardOthers(winner: Attempt | undefined): void {
    for (const attempt of this.#attempts) if (attempt !== winner) attempt.discard()
    this.#attempts = winner === undefined ? [] : [winner]
  }

  #finish(): void {
    this.#done = true
    if (this.#onContextAbort !== undefined) {
      ;(this.#context as CallContext).signal.removeEventListener('abort', this.#onContextAbort)
      this.#onContextAbort = undefined
    }
  }

  /** @internal A chunk of the accepted response. */
  data(chunk: Buffer): void {
    if (!this.#done) this.#handler.onResponseData?.(this, chunk)
  }

  /** @internal The accepted response ended. */
  end(trailers: Headers): void {
    if (this.#done) return
    this.#finish()
    this.#handler.onResponseEnd?.(this, trailers)
  }

  /** @internal The accepted response failed mid-body. */
  error(error: Error): void {
    if (this.#done) return
    this.#finish()
    this.#handler.onResponseError?.(this, this.#reason ?? error)
  }

  // The controller of the caller's handler.

  get aborted(): boolean {
    return this.#reason !== null
  }

  get paused(): boolean {
    return this.#paused
  }

  get reason(): Error | null {
    return this.#reason
  }

  abort(reason: unknown): void {
    if (this.#reason !== null || this.#done) return
    this.#reason = reason instanceof Error ? reason : new Error(String(reason ?? 'aborted'))
    const winner = this.#winner
    // Accepted: the response's own error path tells the handler; otherwise the policies stop and reject.
    if (winner !== undefined) winner.controller?.abort(this.#reason)
    else this.#controller.abort(this.#reason)
  }

  pause(): void {
    this.#paused = true
    this.#winner?.controller?.pause()
  }

  resume(): void {
    if (!this.#paused) return
    this.#paused = false
    if (this.#winner === undefined || this.#flushing) return
    this.#flush()
  }
}

function discardedError(): Error {
  const error = new Error('Breakwater discarded this attempt (retried, lost a hedge, or the call settled).')
  error.name = 'AbortError'
  return error
}
