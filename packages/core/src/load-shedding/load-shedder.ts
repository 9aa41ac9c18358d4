// The load shedder: HTTP admission on the concurrency limiter. The limiter holds the permits and the priority
// queue (CoDel waits, LIFO once standing); this adds what is about requests — priority classification,
// exclusions, process pressure, dry runs, the 503 — and releases each permit exactly once when its response
// closes.

import type { ServerResponse } from 'node:http'
import { ConcurrencyLimiter, type Waiter } from '../concurrency/concurrency-limiter.js'
import { CONTINUE, type Decision, type MaybePromise, type RejectDecision } from '../decision.js'
import { InvalidOptionError } from '../errors.js'
import { channels, publish } from '../events.js'
import { onResponseClose, responseEnded, responseFinished } from '../internal/response.js'
import type { RequestView } from '../request-view.js'
import {
  type LoadSheddingConfig,
  type LoadSheddingOptions,
  type Priority,
  resolveLoadSheddingConfig,
} from './config.js'
import type { LoadSheddingDecisionEvent, LoadSheddingLimitEvent, LoadSheddingPressureEvent } from './events.js'
import type { LimitAlgorithm } from './limits.js'
import { PressureMonitor, type PressureReadings } from './pressure.js'
import type { LoadShedder, OverloadState, Permit } from './types.js'

export type { ExcludeRule, LoadSheddingOptions, Priority, QueueOptions } from './config.js'
export type { LoadShedder, OverloadState, Permit } from './types.js'

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

/** One request's passage: waiting, holding a permit, or done. Doubles as the limiter's waiter and the permit. */
class Ticket implements Permit, Waiter {
  // The limiter's and the deadline queue's bookkeeping.
  deadlineAt = 0
  heapIndex = -1
  next: Waiter | undefined = undefined
  previous: Waiter | undefined = undefined
  waiting = false
  /** When it joined the queue; -1 when it never waited. */
  enqueuedAt = -1
  state = QUEUED
  readonly level: number
  readonly request: RequestView | undefined
  admittedAt = 0
  inflightAtStart = 0
  resolve: ((decision: Decision) => void) | undefined = undefined
  /** A listener on the response will release it (false while the adapter promised `handedOn`). */
  watched = false
  readonly shedder: Shedder

  constructor(shedder: Shedder, level: number, request: RequestView | undefined) {
    this.shedder = shedder
    this.level = level
    this.request = request
  }

  release(outcome: 'success' | 'dropped' | 'ignored' = 'success'): void {
    this.shedder.finish(this, outcome)
  }

  admitted(): void {
    this.shedder.queuedAdmitted(this)
  }

  waitExpired(): void {
    this.shedder.queuedShed(this, 'queue-timeout')
  }

  evicted(): void {
    this.shedder.queuedShed(this, 'evicted')
  }
}

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
  return new Shedder(resolveLoadSheddingConfig(options))
}

class Shedder implements LoadShedder {
  readonly id: string
  readonly #config: LoadSheddingConfig
  readonly #limiter: ConcurrencyLimiter
  readonly #static: boolean
  #lastShedAt = Number.NEGATIVE_INFINITY
  /** True while `admit` decides a request in dry run: its events say so. */
  #deciding = false
  readonly #monitor: PressureMonitor | undefined
  readonly #key = Symbol('breakwater.load-shedding')
  readonly #onClose: (this: ServerResponse) => void

  constructor(config: LoadSheddingConfig) {
    this.id = config.id
    this.#config = config
    this.#limiter = new ConcurrencyLimiter('limit', config.limit, config.queueSize, config.clock, {
      shares: [1, 1, config.sheddableShare],
      codel: { targetMs: config.targetMs, intervalMs: config.intervalMs },
      onLimitChange: (previous) => this.#limitChanged(previous),
    })
    this.#static = !this.#limiter.adaptive
    if (config.pressure !== undefined) {
      const monitor = new PressureMonitor('pressure', config.pressure, (m) => this.#pressureChanged(m))
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
    return this.#limiter.algorithm
  }

  get limit(): number {
    return this.#limiter.limit
  }

  get inflight(): number {
    return this.#limiter.inflight
  }

  get queued(): number {
    return this.#limiter.queued
  }

  get rejection(): RejectDecision {
    return this.#config.rejections[0] as RejectDecision
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
    const config = this.#config
    return (
      config.excluded !== undefined ||
      config.classify !== undefined ||
      typeof config.dryRun === 'function' ||
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
    if (request !== undefined && this.#config.excluded?.(request)) {
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
        const queued = reason === 'limit' && this.#config.queueSize > 0
        this.#publish(queued ? 'queued' : 'shed', queued ? undefined : reason, level, request, 0)
      }
      const ticket = new Ticket(this, level, request)
      this.#hold(ticket, this.#limiter.hold())
      this.#deciding = false
      if (settledByHandler) slots[this.#key] = ticket
      else this.#watch(res, slots, ticket)
      return CONTINUE
    }
    const ticket = this.#wait(reason, level, request)
    if (!(ticket instanceof Ticket)) return ticket
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
      const ticket = new Ticket(this, level, request)
      this.#hold(ticket, this.#limiter.hold())
      return ticket
    }
    const signal = options.signal
    const ticket = this.#wait(reason, level, request, signal?.aborted === true)
    if (!(ticket instanceof Ticket)) return ticket
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
    const now = this.#config.clock()
    if (now - this.#lastShedAt < 1000) reasons.push('concurrency')
    if (this.#limiter.standing(now)) reasons.push('queue')
    return { overloaded: reasons.length > 0, reasons, limit: this.#limiter.limit, inflight: this.#limiter.inflight }
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
    this.#limiter.release(outcome, ticket.admittedAt, ticket.inflightAtStart)
  }

  /** @internal The limiter gave a queued ticket a permit. */
  queuedAdmitted(ticket: Ticket): void {
    this.#hold(ticket, this.#limiter.inflight)
    ticket.resolve?.(CONTINUE)
  }

  /** @internal The limiter took a queued ticket out: it waited too long, or a higher priority took its place. */
  queuedShed(ticket: Ticket, reason: Reason): void {
    ticket.state = DONE
    const decision = this.#shed(reason, ticket.level, ticket.request, this.#config.clock() - ticket.enqueuedAt)
    ticket.resolve?.(decision)
  }

  #priorityOf(request: RequestView | undefined, given: Priority | undefined): number {
    if (given !== undefined) return toLevel(given)
    const classify = this.#config.classify
    return classify === undefined || request === undefined ? NORMAL : toLevel(classify(request))
  }

  #inDryRun(request: RequestView | undefined): boolean {
    const dryRun = this.#config.dryRun
    return typeof dryRun === 'boolean' ? dryRun : request !== undefined && dryRun(request) === true
  }

  /** Why a request of this priority cannot run now, or `undefined` when it can. */
  #refusal(level: number): Reason | undefined {
    const monitor = this.#monitor
    if (monitor !== undefined && monitor.level > 0 && level !== CRITICAL) {
      // Sheddable work goes at twice the rate of normal work; critical work is never shed for pressure.
      const probability = level === SHEDDABLE ? Math.min(1, 2 * monitor.level) : monitor.level
      if (probability >= 1 || this.#config.random() < probability) return 'pressure'
    }
    return this.#limiter.canAcquire(level) ? undefined : 'limit'
  }

  /** Queue a refused request when it may wait (and its caller has not left), or shed it. */
  #wait(reason: Reason, level: number, request: RequestView | undefined, left = false): Ticket | RejectDecision {
    if (reason !== 'limit' || this.#config.queueSize === 0) return this.#shed(reason, level, request, 0)
    const ticket = new Ticket(this, level, request)
    if (left || !this.#limiter.enqueue(ticket)) return this.#shed('queue-full', level, request, 0)
    if (channels.loadSheddingDecision.hasSubscribers) this.#publish('queued', undefined, level, request, 0)
    return ticket
  }

  #hold(ticket: Ticket, inflight: number): void {
    ticket.state = HELD
    // A static limit learns nothing from latency: spare it the clock read.
    if (!this.#static) ticket.admittedAt = this.#config.clock()
    ticket.inflightAtStart = inflight
    if (channels.loadSheddingDecision.hasSubscribers) {
      const wait = ticket.enqueuedAt < 0 ? 0 : this.#config.clock() - ticket.enqueuedAt
      this.#publish('admitted', undefined, ticket.level, ticket.request, wait)
    }
  }

  #shed(reason: Reason, level: number, request: RequestView | undefined, waitMs: number): RejectDecision {
    if (reason !== 'pressure') this.#lastShedAt = this.#config.clock() // pressure has its own reasons in overloadState
    if (channels.loadSheddingDecision.hasSubscribers) this.#publish('shed', reason, level, request, waitMs)
    const all = this.#config.rejections
    const pick = all.length === 1 ? 0 : Math.min(all.length - 1, Math.floor(this.#config.random() * all.length))
    return all[pick] as RejectDecision
  }

  #abandon(ticket: Ticket): void {
    if (ticket.state !== QUEUED) return
    this.#limiter.leave(ticket)
    ticket.state = DONE
    if (channels.loadSheddingDecision.hasSubscribers) {
      const waited = this.#config.clock() - ticket.enqueuedAt
      this.#publish('abandoned', undefined, ticket.level, ticket.request, waited)
    }
    ticket.resolve?.(this.#config.rejections[0] as RejectDecision)
  }

  #limitChanged(previous: number): void {
    const limiter = this.#limiter
    if (limiter.limit === previous || !channels.loadSheddingLimit.hasSubscribers) return
    publish(channels.loadSheddingLimit, {
      policy: this.id,
      algorithm: limiter.algorithm,
      previous,
      limit: limiter.limit,
      rttSeconds: limiter.lastRttMs / 1000,
      inflight: limiter.inflight,
    } satisfies LoadSheddingLimitEvent)
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
    const limiter = this.#limiter
    publish(channels.loadSheddingDecision, {
      policy: this.id,
      outcome,
      reason,
      priority: PRIORITIES[level] as Priority,
      limit: limiter.limit,
      inflight: limiter.inflight,
      queued: limiter.queued,
      waitSeconds: waitMs / 1000,
      dryRun: this.#deciding,
      request,
    } satisfies LoadSheddingDecisionEvent)
  }
}

function toLevel(priority: Priority | undefined): number {
  if (priority === undefined || priority === 'normal') return NORMAL
  if (priority === 'critical') return CRITICAL
  if (priority === 'sheddable') return SHEDDABLE
  throw new InvalidOptionError('priority', priority, '"critical", "normal", "sheddable" or undefined')
}
