// The load shedder: admits requests up to a concurrency limit (static or adaptive), queues a few with CoDel-style
// waiting, sheds by priority and process pressure, and releases each permit exactly once when its response closes.

import type { ServerResponse } from 'node:http'
import { AdaptiveLimit } from '../concurrency/adaptive-limit.js'
import { CONTINUE, type Decision, type MaybePromise, type RejectDecision } from '../decision.js'
import { ErrorCode, InvalidOptionError } from '../errors.js'
import { channels, publish } from '../events.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { onResponseClose, responseEnded, responseFinished } from '../internal/response.js'
import { knownOptions, nonNegativeNumber, optionKeys, positiveInteger } from '../internal/validate.js'
import { PROBLEM_CONTENT_TYPE, ProblemType } from '../problem.js'
import type { RequestView } from '../request-view.js'
import type { LoadSheddingDecisionEvent, LoadSheddingLimitEvent, LoadSheddingPressureEvent } from './events.js'
import type { LimitAlgorithm, LimitOptions } from './limits.js'
import { PressureMonitor, type PressureOptions, type PressureReadings } from './pressure.js'

/** How much a request matters when the service is overloaded: sheddable work goes first, critical last. */
export type Priority = 'critical' | 'normal' | 'sheddable'

/** Requests never shed: exact paths, patterns, or a predicate on the request. */
export type ExcludeRule = string | RegExp | ((request: RequestView) => boolean)

/** Options of the bounded wait queue in front of the limit. */
export interface QueueOptions {
  /** Requests waiting at most. Default `50`. */
  size?: number
  /** Longest wait once a standing queue has formed (Facebook's CoDel M). Default `5` ms. */
  targetMs?: number
  /** Longest wait otherwise, and how long the queue must stay non-empty to count as standing (N). Default `100` ms. */
  intervalMs?: number
}

/** Options of {@link createLoadShedder} and of every framework adapter's load-shedding middleware. */
export interface LoadSheddingOptions {
  /** Names the policy in events. Default `"load-shedding"`. */
  id?: string
  /**
   * The concurrency limit: a number (static), an algorithm name with its defaults, or options. Default
   * `"gradient2"`: adaptive, between 1 and 1000 requests in flight, starting at 20.
   */
  limit?: number | 'gradient2' | 'aimd' | 'vegas' | LimitOptions
  /** A bounded queue in front of the limit (`true` for its defaults). Default `false`: over the limit is shed at once. */
  queue?: boolean | QueueOptions
  /** Classifies a request; `undefined` counts as `"normal"`. Default: every request is normal. */
  priority?: (request: RequestView) => Priority | undefined
  /** Share of the limit sheddable requests may use, so critical and normal work keeps headroom. Default `0.75`. */
  sheddableShare?: number
  /** Process pressure signals and their thresholds. Default: none measured. */
  pressure?: PressureOptions
  /** Never shed these (health probes!): paths compared with `request.path`, RegExps, predicates. Default none. */
  exclude?: ExcludeRule | readonly ExcludeRule[]
  /** `Retry-After` seconds, a number or a `[min, max]` range picked uniformly per response. Default `[1, 5]`. */
  retryAfterSeconds?: number | readonly [number, number]
  /** `detail` of the 503 problem body. Default "The server is overloaded; retry later." */
  message?: string
  /** Monotonic ms clock; inject one in tests. Default `performance.now`. */
  clock?: Clock
  /** Uniform random numbers in [0, 1) for jitter and pressure ramps; inject one in tests. Default `Math.random`. */
  random?: () => number
  /**
   * Decide and report as when enforcing — the decision events carry `dryRun: true` — but admit every request
   * `admit` would have queued or shed (it then holds a permit like any other). `true`, or a function of the
   * request. `overloadState()` is not raised by decisions not enforced. Default `false`.
   */
  dryRun?: boolean | ((request: RequestView) => boolean)
}

/** What a readiness probe reads: cheap and synchronous. */
export interface OverloadState {
  overloaded: boolean
  /** `concurrency` (shedding at the limit recently), `queue` (a standing queue), or a pressure signal name. */
  reasons: string[]
  limit?: number
  inflight?: number
}

/** A held slot under the limit. Release it exactly once; later calls do nothing. */
export interface Permit {
  /**
   * Give the slot back and tell the limiter how it went: `success` (default) feeds the latency, `dropped` (a
   * timeout or an overloaded dependency) tells it to back off, `ignored` (the client left, an unrelated error)
   * feeds nothing.
   */
  release(outcome?: 'success' | 'dropped' | 'ignored'): void
}

/** A load shedder usable with or without HTTP; adapters call {@link LoadShedder.admit} once per request. */
export interface LoadShedder {
  readonly id: string
  /** `static`, `gradient2`, `aimd` or `vegas`. */
  readonly algorithm: LimitAlgorithm['name']
  /** The current limit on requests in flight (whole requests). */
  readonly limit: number
  /** Requests holding a permit now. */
  readonly inflight: number
  /** Requests waiting in the queue now. */
  readonly queued: number
  /** The 503 answer (one of the `Retry-After` variants). */
  readonly rejection: RejectDecision
  /**
   * Decide for the request answered by `res`: `continue` (a permit is held and released when `res` closes,
   * whatever happened), a 503 rejection, or — when queued — a promise of either. Excluded requests continue
   * without a permit. A queued request whose client leaves is dropped from the queue; its promise resolves to
   * the rejection, and there is nobody to send it to. `request` may be left out while {@link wantsRequest} is
   * false. `holder` is the per-request object the permit is kept on (default `res`; see `requestContext`).
   * With `settledByHandler`, a permit granted at once does not listen to `res` yet: the adapter promises to call
   * {@link handedOn} when its middleware gets control back.
   */
  admit(
    res: ServerResponse,
    request: RequestView | undefined,
    priority?: Priority,
    holder?: object,
    settledByHandler?: boolean,
  ): MaybePromise<Decision>
  /**
   * For adapters that passed `settledByHandler` to {@link admit}: the rest of the request's handling has returned
   * (Express: `next()` came back). A permit whose response is already ended (`responseDone`, by default
   * `res.writableEnded`: a handler that answered synchronously) is released now, with the status as its outcome;
   * otherwise it is released when `res` closes, as without `settledByHandler`. Does nothing for a request with no
   * such permit, or whose permit already listens.
   *
   * @example
   * const decision = shedder.admit(res, undefined, undefined, res, true)
   * if (decision.action === 'continue') { next(); shedder.handedOn(res) }
   */
  handedOn(res: ServerResponse, holder?: object, responseDone?: boolean): void
  /**
   * Whether {@link admit} reads the request: an `exclude` or `priority` option, or a subscriber to the decision
   * events. When false, adapters skip building a request view.
   */
  readonly wantsRequest: boolean
  /** Framework-free: a permit, a rejection, or (queued) a promise of either. `signal` abandons a queued wait. */
  acquire(options?: {
    priority?: Priority
    request?: RequestView
    signal?: AbortSignal
  }): MaybePromise<Permit | RejectDecision>
  /** For readiness probes: overloaded now, and why. */
  overloadState(): OverloadState
  /** The last pressure readings (signals without thresholds are `undefined`). */
  readonly pressure: Readonly<PressureReadings>
  /** Re-read the pressure signals now (they are also read on their timer). */
  samplePressure(): void
  /** Stop the pressure timer. */
  close(): void
}

const DEFAULT_ID = 'load-shedding'
const PRIORITIES: readonly Priority[] = ['critical', 'normal', 'sheddable']
const CRITICAL = 0
const NORMAL = 1
const SHEDDABLE = 2

type Reason = NonNullable<LoadSheddingDecisionEvent['reason']>

/** What a finished response's status tells the limiter: 503/504 are drops, other 5xx say nothing of latency. */
function outcomeOf(status: number): 'success' | 'dropped' | 'ignored' {
  return status === 503 || status === 504 ? 'dropped' : status >= 500 ? 'ignored' : 'success'
}

const QUEUED = 0
const HELD = 1
const DONE = 2

/** One request's passage: waiting, holding a permit, or done. Doubles as the queue entry and the permit. */
class Ticket implements Permit {
  state = QUEUED
  readonly priority: number
  readonly request: RequestView | undefined
  /** When it joined the queue; -1 when it never waited. */
  readonly enqueuedAt: number
  admittedAt = 0
  inflightAtStart = 0
  resolve: ((decision: Decision) => void) | undefined = undefined
  timer: NodeJS.Timeout | undefined = undefined
  /** A listener on the response will release it (false while the adapter promised `handedOn`). */
  watched = false
  readonly shedder: Shedder

  constructor(shedder: Shedder, priority: number, request: RequestView | undefined, now: number) {
    this.shedder = shedder
    this.priority = priority
    this.request = request
    this.enqueuedAt = now
  }

  release(outcome: 'success' | 'dropped' | 'ignored' = 'success'): void {
    this.shedder.finish(this, outcome)
  }
}

/** Every option of loadShedding; any other key is an error naming it. */
const OPTIONS = optionKeys<LoadSheddingOptions>()([
  'id',
  'limit',
  'queue',
  'priority',
  'sheddableShare',
  'pressure',
  'exclude',
  'retryAfterSeconds',
  'message',
  'clock',
  'random',
  'dryRun',
])

/**
 * Create a load shedder. Options are checked here; an invalid one throws {@link InvalidOptionError} naming it.
 *
 * @example
 * const shedder = createLoadShedder({
 *   limit: 'gradient2',
 *   queue: { size: 50 },
 *   priority: (req) => (req.path.startsWith('/admin') ? 'critical' : req.path === '/recommendations' ? 'sheddable' : 'normal'),
 *   pressure: { maxEventLoopDelayMs: 200, ramp: true },
 *   exclude: ['/livez', '/readyz'],
 * })
 * // framework-free
 * const permit = await shedder.acquire({ priority: 'normal' })
 * if ('release' in permit) { try { await work() } finally { permit.release() } }
 */
export function createLoadShedder(options: LoadSheddingOptions = {}): LoadShedder {
  return new Shedder(options)
}

class Shedder implements LoadShedder {
  readonly id: string
  readonly #limit: AdaptiveLimit
  readonly #static: boolean
  #capacity: number
  #sheddableCapacity: number
  readonly #share: number
  #inflight = 0
  // Queue: one list per priority with a moving head; entries leave lazily (state !== QUEUED).
  readonly #lists: Ticket[][] = [[], [], []]
  readonly #heads = [0, 0, 0]
  #queued = 0
  readonly #queueSize: number
  readonly #targetMs: number
  readonly #intervalMs: number
  #lastEmptyAt: number
  #lastShedAt = Number.NEGATIVE_INFINITY
  readonly #classify: ((request: RequestView) => Priority | undefined) | undefined
  readonly #excluded: ((request: RequestView) => boolean) | undefined
  readonly #dryRun: boolean | ((request: RequestView) => boolean)
  /** True while `admit` decides a request in dry run: its events say so. */
  #deciding = false
  readonly #monitor: PressureMonitor | undefined
  readonly #rejections: readonly RejectDecision[]
  readonly #now: Clock
  readonly #random: () => number
  readonly #key = Symbol('breakwater.load-shedding')
  readonly #onClose: (this: ServerResponse) => void

  constructor(options: LoadSheddingOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
    knownOptions('loadShedding', options, OPTIONS)
    const id = options.id ?? DEFAULT_ID
    if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
      throw new InvalidOptionError('id', id, 'a non-empty string of at most 64 characters')
    }
    this.id = id
    this.#limit = new AdaptiveLimit(
      'limit',
      options.limit ?? 'gradient2',
      typeof options.clock === 'function' ? options.clock : undefined,
    )
    this.#static = this.#limit.isStatic
    const share = options.sheddableShare ?? 0.75
    if (typeof share !== 'number' || !(share > 0 && share <= 1)) {
      throw new InvalidOptionError('sheddableShare', share, 'a number in (0, 1]')
    }
    this.#share = share
    this.#capacity = 0
    this.#sheddableCapacity = 0
    this.#setCapacity(this.#limit.limit)

    const queue = options.queue ?? false
    if (typeof queue !== 'boolean' && (typeof queue !== 'object' || queue === null)) {
      throw new InvalidOptionError('queue', queue, 'a boolean or queue options')
    }
    const queueOptions = queue === true ? {} : queue === false ? undefined : queue
    this.#queueSize = queueOptions === undefined ? 0 : positiveInteger('queue.size', queueOptions.size ?? 50)
    this.#targetMs = positive('queue.targetMs', queueOptions?.targetMs ?? 5)
    this.#intervalMs = positive('queue.intervalMs', queueOptions?.intervalMs ?? 100)

    if (options.priority !== undefined && typeof options.priority !== 'function') {
      throw new InvalidOptionError('priority', options.priority, 'a function of the request')
    }
    this.#classify = options.priority
    this.#excluded = compileExclude(options.exclude)
    const dryRun = options.dryRun ?? false
    if (typeof dryRun !== 'boolean' && typeof dryRun !== 'function') {
      throw new InvalidOptionError('dryRun', dryRun, 'a boolean or a function of the request')
    }
    this.#dryRun = dryRun
    this.#now = options.clock ?? monotonicNow
    if (typeof this.#now !== 'function') throw new InvalidOptionError('clock', options.clock, 'a function')
    this.#random = options.random ?? Math.random
    if (typeof this.#random !== 'function') throw new InvalidOptionError('random', options.random, 'a function')
    this.#rejections = rejections(options.retryAfterSeconds ?? [1, 5], options.message)
    this.#lastEmptyAt = this.#now()

    if (options.pressure !== undefined) {
      if (typeof options.pressure !== 'object' || options.pressure === null) {
        throw new InvalidOptionError('pressure', options.pressure, 'pressure options')
      }
      const monitor = new PressureMonitor('pressure', options.pressure, (m) => this.#pressureChanged(m))
      this.#monitor = monitor.active ? monitor : undefined
    }

    const key = this.#key
    const shedder = this
    // One listener function per shedder (`this` is the response): nothing is allocated per request for it.
    this.#onClose = function releaseOnClose(this: ServerResponse): void {
      const ticket = (this as ServerResponse & Record<symbol, Ticket | undefined>)[key]
      if (ticket !== undefined) shedder.#closed(this, ticket)
    }
  }

  /** The response of `ticket` closed: release its permit (or its queue place), with the outcome as its signal. */
  #closed(res: ServerResponse, ticket: Ticket): void {
    if (ticket.state === QUEUED) this.#abandon(ticket)
    else if (!responseFinished(res))
      this.finish(ticket, 'ignored') // the client left: no latency signal
    else this.finish(ticket, outcomeOf(res.statusCode))
  }

  get algorithm(): LimitAlgorithm['name'] {
    return this.#limit.algorithm
  }

  get limit(): number {
    return this.#capacity
  }

  get inflight(): number {
    return this.#inflight
  }

  get queued(): number {
    return this.#queued
  }

  get rejection(): RejectDecision {
    return this.#rejections[0] as RejectDecision
  }

  get pressure(): Readonly<PressureReadings> {
    return (
      this.#monitor?.readings ?? {
        eventLoopDelayMs: undefined,
        eventLoopUtilization: undefined,
        heapUsedBytes: undefined,
        rssBytes: undefined,
      }
    )
  }

  get wantsRequest(): boolean {
    return (
      this.#excluded !== undefined ||
      this.#classify !== undefined ||
      typeof this.#dryRun === 'function' ||
      channels.loadSheddingDecision.hasSubscribers
    )
  }

  admit(
    res: ServerResponse,
    request: RequestView | undefined,
    priority?: Priority,
    holder: object = res,
    settledByHandler = false,
  ): MaybePromise<Decision> {
    const slots = holder as Record<symbol, Ticket | undefined>
    if (slots[this.#key] !== undefined) return CONTINUE // mounted twice on the same request
    if (request !== undefined && this.#excluded?.(request)) {
      if (channels.loadSheddingDecision.hasSubscribers) this.#publish('skipped', undefined, NORMAL, request, 0)
      return CONTINUE
    }
    const level = this.#priorityOf(request, priority)
    const reason = this.#refusal(level)
    const dryRun = reason !== undefined && this.#inDryRun(request)
    if (reason === undefined || dryRun) {
      this.#deciding = dryRun
      // Reported as enforcement would decide it (queued or shed), then admitted all the same.
      if (dryRun && channels.loadSheddingDecision.hasSubscribers) {
        const queued = reason === 'limit' && this.#queueSize > 0
        this.#publish(queued ? 'queued' : 'shed', queued ? undefined : reason, level, request, 0)
      }
      const ticket = new Ticket(this, level, request, -1)
      this.#hold(ticket)
      this.#deciding = false
      if (settledByHandler) slots[this.#key] = ticket
      else this.#watch(res, slots, ticket)
      return CONTINUE
    }
    if (reason !== 'limit' || this.#queueSize === 0) return this.#shed(reason, level, request, 0)
    const ticket = new Ticket(this, level, request, this.#now())
    if (!this.#enqueue(ticket)) return this.#shed('queue-full', level, request, 0)
    this.#watch(res, slots, ticket)
    return new Promise<Decision>((resolve) => {
      ticket.resolve = resolve
    })
  }

  /**
   * Keep `ticket` on `slots` and release it when `res` closes. Kept on the response itself, the shared listener
   * finds it there; kept elsewhere, a listener of its own holds it, so replacing that holder cannot leak a permit.
   */
  #watch(res: ServerResponse, slots: Record<symbol, Ticket | undefined>, ticket: Ticket): void {
    slots[this.#key] = ticket
    ticket.watched = true
    if (slots === (res as object)) onResponseClose(res, this.#onClose)
    else onResponseClose(res, () => this.#closed(res, ticket))
  }

  handedOn(res: ServerResponse, holder: object = res, responseDone?: boolean): void {
    const slots = holder as Record<symbol, Ticket | undefined>
    const ticket = slots[this.#key]
    if (ticket === undefined || ticket.watched || ticket.state !== HELD) return
    if (responseDone ?? responseEnded(res)) this.finish(ticket, outcomeOf(res.statusCode))
    else this.#watch(res, slots, ticket)
  }

  acquire(
    options: { priority?: Priority; request?: RequestView; signal?: AbortSignal } = {},
  ): MaybePromise<Permit | RejectDecision> {
    const request = options.request
    const level = request === undefined ? toLevel(options.priority) : this.#priorityOf(request, options.priority)
    const reason = this.#refusal(level)
    if (reason === undefined) {
      const ticket = new Ticket(this, level, request, -1)
      this.#hold(ticket)
      return ticket
    }
    if (reason !== 'limit' || this.#queueSize === 0) return this.#shed(reason, level, request, 0)
    const ticket = new Ticket(this, level, request, this.#now())
    if (options.signal?.aborted || !this.#enqueue(ticket)) return this.#shed('queue-full', level, request, 0)
    const signal = options.signal
    return new Promise<Permit | RejectDecision>((resolve) => {
      const onAbort = (): void => this.#abandon(ticket)
      signal?.addEventListener('abort', onAbort, { once: true })
      ticket.resolve = (decision) => {
        signal?.removeEventListener('abort', onAbort)
        resolve(decision.action === 'continue' ? ticket : decision)
      }
    })
  }

  overloadState(): OverloadState {
    const reasons: string[] = this.#monitor === undefined ? [] : [...this.#monitor.reasons]
    const now = this.#now()
    if (now - this.#lastShedAt < 1000) reasons.push('concurrency')
    if (this.#queued > 0 && now - this.#lastEmptyAt > this.#intervalMs) reasons.push('queue')
    return { overloaded: reasons.length > 0, reasons, limit: this.#capacity, inflight: this.#inflight }
  }

  samplePressure(): void {
    this.#monitor?.sample()
  }

  close(): void {
    this.#monitor?.close()
  }

  /** @internal Release a permit (or drop a waiting ticket) exactly once. */
  finish(ticket: Ticket, outcome: 'success' | 'dropped' | 'ignored'): void {
    if (ticket.state !== HELD) {
      if (ticket.state === QUEUED) this.#abandon(ticket)
      return
    }
    ticket.state = DONE
    this.#inflight--
    if (!this.#static && outcome !== 'ignored') this.#sample(ticket, outcome === 'dropped')
    if (this.#queued > 0) this.#drain()
  }

  #priorityOf(request: RequestView | undefined, given: Priority | undefined): number {
    if (given !== undefined) return toLevel(given)
    return this.#classify === undefined || request === undefined ? NORMAL : toLevel(this.#classify(request))
  }

  #inDryRun(request: RequestView | undefined): boolean {
    const dryRun = this.#dryRun
    return typeof dryRun === 'boolean' ? dryRun : request !== undefined && dryRun(request) === true
  }

  /** Why a request of this priority cannot run now, or `undefined` when it can. */
  #refusal(level: number): Reason | undefined {
    const monitor = this.#monitor
    if (monitor !== undefined && monitor.level > 0 && level !== CRITICAL) {
      // Sheddable work goes at twice the rate of normal work; critical work is never shed for pressure.
      const probability = level === SHEDDABLE ? Math.min(1, 2 * monitor.level) : monitor.level
      if (probability >= 1 || this.#random() < probability) return 'pressure'
    }
    const capacity = level === SHEDDABLE ? this.#sheddableCapacity : this.#capacity
    // Waiting requests go first: a newcomer does not jump the queue unless it outranks everyone waiting.
    if (this.#inflight < capacity && (this.#queued === 0 || !this.#waitingAtOrAbove(level))) return undefined
    return 'limit'
  }

  #waitingAtOrAbove(level: number): boolean {
    for (let p = 0; p <= level; p++) if (this.#lists[p]?.length !== this.#heads[p]) return true
    return false
  }

  #hold(ticket: Ticket): void {
    ticket.state = HELD
    // A static limit learns nothing from latency: spare it the clock read.
    if (!this.#static) ticket.admittedAt = this.#now()
    ticket.inflightAtStart = ++this.#inflight
    if (channels.loadSheddingDecision.hasSubscribers) {
      const wait = ticket.enqueuedAt < 0 ? 0 : this.#now() - ticket.enqueuedAt
      this.#publish('admitted', undefined, ticket.priority, ticket.request, wait)
    }
  }

  #shed(reason: Reason, level: number, request: RequestView | undefined, waitMs: number): RejectDecision {
    if (reason !== 'pressure') this.#lastShedAt = this.#now() // pressure has its own reasons in overloadState
    if (channels.loadSheddingDecision.hasSubscribers) this.#publish('shed', reason, level, request, waitMs)
    const all = this.#rejections
    const pick = all.length === 1 ? 0 : Math.min(all.length - 1, Math.floor(this.#random() * all.length))
    return all[pick] as RejectDecision
  }

  // ---- queue ----

  #enqueue(ticket: Ticket): boolean {
    const now = ticket.enqueuedAt
    this.#expire(now)
    if (this.#queued >= this.#queueSize) {
      // Full: a newcomer may take the place of the newest waiter of a lower priority.
      let victim: Ticket | undefined
      for (let p = SHEDDABLE; p > ticket.priority && victim === undefined; p--) victim = this.#popTail(p)
      if (victim === undefined) return false
      this.#queued--
      this.#reject(victim, 'evicted')
    }
    if (this.#queued === 0) this.#lastEmptyAt = now
    ;(this.#lists[ticket.priority] as Ticket[]).push(ticket)
    this.#queued++
    // A waiter never outlives the normal wait, even if nothing is released meanwhile.
    const timer = setTimeout(onWaitTimeout, this.#intervalMs, ticket)
    timer.unref()
    ticket.timer = timer
    if (channels.loadSheddingDecision.hasSubscribers) {
      this.#publish('queued', undefined, ticket.priority, ticket.request, 0)
    }
    return true
  }

  /** Admit waiters while there is room: best priority first; FIFO, or LIFO once the queue is standing. */
  #drain(): void {
    const now = this.#now()
    this.#expire(now)
    while (this.#queued > 0) {
      let ticket: Ticket | undefined
      for (let p = CRITICAL; p <= SHEDDABLE && ticket === undefined; p++) {
        if (this.#lists[p]?.length === this.#heads[p]) continue
        const capacity = p === SHEDDABLE ? this.#sheddableCapacity : this.#capacity
        if (this.#inflight >= capacity) return
        ticket = this.#standing(now) ? this.#popTail(p) : this.#popHead(p)
      }
      if (ticket === undefined) return
      this.#queued--
      if (this.#queued === 0) this.#lastEmptyAt = now
      clearTimeout(ticket.timer)
      this.#hold(ticket)
      ticket.resolve?.(CONTINUE)
    }
  }

  #standing(now: number): boolean {
    return now - this.#lastEmptyAt > this.#intervalMs
  }

  /** Shed waiters past their allowed wait: `intervalMs`, or `targetMs` once the queue is standing. */
  #expire(now: number): void {
    if (this.#queued === 0) return
    const allowed = this.#standing(now) ? this.#targetMs : this.#intervalMs
    for (let p = CRITICAL; p <= SHEDDABLE; p++) {
      const list = this.#lists[p] as Ticket[]
      let head = this.#heads[p] as number
      while (head < list.length) {
        const ticket = list[head] as Ticket
        if (ticket.state === QUEUED && now - ticket.enqueuedAt <= allowed) break
        head++
        if (ticket.state === QUEUED) {
          this.#queued--
          this.#reject(ticket, 'queue-timeout')
        }
      }
      this.#heads[p] = head
      this.#compact(p)
    }
    if (this.#queued === 0) this.#lastEmptyAt = now
  }

  /** @internal A waiter's own timer fired. */
  timeOut(ticket: Ticket): void {
    if (ticket.state !== QUEUED) return
    this.#expire(this.#now())
    if (ticket.state === QUEUED) {
      // Its timer fired a hair before the clock agrees: it has waited the interval all the same.
      this.#unlink(ticket)
      this.#reject(ticket, 'queue-timeout')
    }
  }

  #abandon(ticket: Ticket): void {
    if (ticket.state !== QUEUED) return
    this.#unlink(ticket)
    ticket.state = DONE
    clearTimeout(ticket.timer)
    if (channels.loadSheddingDecision.hasSubscribers) {
      this.#publish('abandoned', undefined, ticket.priority, ticket.request, this.#now() - ticket.enqueuedAt)
    }
    ticket.resolve?.(this.#rejections[0] as RejectDecision)
  }

  #unlink(ticket: Ticket): void {
    const list = this.#lists[ticket.priority] as Ticket[]
    const index = list.indexOf(ticket, this.#heads[ticket.priority])
    if (index === -1) return
    list.splice(index, 1)
    this.#queued--
    if (this.#queued === 0) this.#lastEmptyAt = this.#now()
  }

  #reject(ticket: Ticket, reason: Reason): void {
    ticket.state = DONE
    clearTimeout(ticket.timer)
    const decision = this.#shed(reason, ticket.priority, ticket.request, this.#now() - ticket.enqueuedAt)
    ticket.resolve?.(decision)
  }

  #popHead(p: number): Ticket | undefined {
    const list = this.#lists[p] as Ticket[]
    let head = this.#heads[p] as number
    let found: Ticket | undefined
    while (head < list.length && found === undefined) {
      const ticket = list[head++] as Ticket
      if (ticket.state === QUEUED) found = ticket
    }
    this.#heads[p] = head
    this.#compact(p)
    return found
  }

  #popTail(p: number): Ticket | undefined {
    const list = this.#lists[p] as Ticket[]
    const head = this.#heads[p] as number
    while (list.length > head) {
      const ticket = list.pop() as Ticket
      if (ticket.state === QUEUED) return ticket
    }
    return undefined
  }

  #compact(p: number): void {
    const list = this.#lists[p] as Ticket[]
    const head = this.#heads[p] as number
    if (head === list.length) {
      list.length = 0
      this.#heads[p] = 0
    } else if (head > 64 && head * 2 > list.length) {
      list.splice(0, head)
      this.#heads[p] = 0
    }
  }

  // ---- adaptive limit ----

  #sample(ticket: Ticket, dropped: boolean): void {
    const adaptive = this.#limit
    const previous = this.#capacity
    if (!adaptive.sample(ticket.admittedAt, ticket.inflightAtStart, this.#inflight, dropped)) return
    this.#setCapacity(adaptive.limit)
    if (this.#capacity !== previous && channels.loadSheddingLimit.hasSubscribers) {
      publish(channels.loadSheddingLimit, {
        policy: this.id,
        algorithm: adaptive.algorithm,
        previous,
        limit: this.#capacity,
        rttSeconds: adaptive.lastRttMs / 1000,
        inflight: this.#inflight,
      } satisfies LoadSheddingLimitEvent)
    }
  }

  #setCapacity(limit: number): void {
    this.#capacity = Math.max(1, Math.floor(limit))
    this.#sheddableCapacity = Math.max(1, Math.floor(this.#capacity * this.#share))
  }

  #pressureChanged(monitor: PressureMonitor): void {
    if (!channels.loadSheddingPressure.hasSubscribers) return
    publish(channels.loadSheddingPressure, {
      policy: this.id,
      overloaded: monitor.level > 0,
      level: monitor.level,
      reasons: [...monitor.reasons],
      readings: { ...monitor.readings },
    } satisfies LoadSheddingPressureEvent)
  }

  #publish(
    outcome: LoadSheddingDecisionEvent['outcome'],
    reason: Reason | undefined,
    level: number,
    request: RequestView | undefined,
    waitMs: number,
  ): void {
    publish(channels.loadSheddingDecision, {
      policy: this.id,
      outcome,
      reason,
      priority: PRIORITIES[level] as Priority,
      limit: this.#capacity,
      inflight: this.#inflight,
      queued: this.#queued,
      waitSeconds: waitMs / 1000,
      dryRun: this.#deciding,
      request,
    } satisfies LoadSheddingDecisionEvent)
  }
}

function onWaitTimeout(ticket: Ticket): void {
  ticket.shedder.timeOut(ticket)
}

function toLevel(priority: Priority | undefined): number {
  if (priority === undefined || priority === 'normal') return NORMAL
  if (priority === 'critical') return CRITICAL
  if (priority === 'sheddable') return SHEDDABLE
  throw new InvalidOptionError('priority', priority, '"critical", "normal", "sheddable" or undefined')
}

function positive(option: string, value: unknown): number {
  if (nonNegativeNumber(option, value) === 0) throw new InvalidOptionError(option, value, 'a number > 0')
  return value as number
}

function compileExclude(
  exclude: ExcludeRule | readonly ExcludeRule[] | undefined,
): ((request: RequestView) => boolean) | undefined {
  if (exclude === undefined) return undefined
  const rules = Array.isArray(exclude) ? (exclude as readonly ExcludeRule[]) : [exclude as ExcludeRule]
  const paths = new Set<string>()
  const tests: ((request: RequestView) => boolean)[] = []
  for (const rule of rules) {
    if (typeof rule === 'string') paths.add(rule)
    else if (rule instanceof RegExp) tests.push((request) => rule.test(request.path))
    else if (typeof rule === 'function') tests.push(rule)
    else throw new InvalidOptionError('exclude', rule, 'paths, RegExps or predicates of the request')
  }
  if (tests.length === 0) return paths.size === 0 ? undefined : (request) => paths.has(request.path)
  return (request) => paths.has(request.path) || tests.some((test) => test(request))
}

/** One frozen 503 per `Retry-After` value, so jitter costs no allocation per rejection. */
function rejections(retryAfter: unknown, message: unknown): RejectDecision[] {
  const range = typeof retryAfter === 'number' ? [retryAfter, retryAfter] : retryAfter
  if (
    !Array.isArray(range) ||
    range.length !== 2 ||
    !range.every((n) => Number.isSafeInteger(n) && n >= 0) ||
    range[0] > range[1] ||
    range[1] - range[0] > 3600
  ) {
    throw new InvalidOptionError('retryAfterSeconds', retryAfter, 'whole seconds ≥ 0, or a [min, max] range of them')
  }
  const detail = message ?? 'The server is overloaded; retry later.'
  if (typeof detail !== 'string') throw new InvalidOptionError('message', message, 'a string')
  const body = Object.freeze({
    type: ProblemType.TemporaryReducedCapacity,
    title: 'Service Unavailable',
    status: 503,
    detail,
    code: ErrorCode.Overloaded,
  })
  const all: RejectDecision[] = []
  for (let seconds = range[0] as number; seconds <= (range[1] as number); seconds++) {
    all.push(
      Object.freeze({
        action: 'reject',
        status: 503,
        headers: Object.freeze([
          Object.freeze(['Content-Type', PROBLEM_CONTENT_TYPE] as const),
          Object.freeze(['Retry-After', String(seconds)] as const),
        ]),
        body,
      }),
    )
  }
  return all
}
