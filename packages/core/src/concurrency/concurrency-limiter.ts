// The concurrency limiter with no HTTP in it: a limit (static or adaptive), permits counted in flight, and a
// bounded queue per priority level whose waits are timed by the deadline queue. The bulkhead runs on it with one
// level and a FIFO queue; load shedding with three levels, a smaller share for the lowest, and CoDel waiting.

import { type Clock, monotonicNow } from '../internal/clock.js'
import { type DeadlineEntry, DeadlineQueue } from '../internal/deadline-queue.js'
import type { LimitAlgorithm, LimitOptions } from '../load-shedding/limits.js'
import { AdaptiveLimit } from './adaptive-limit.js'

/** A queued unit of work. The limiter calls `admitted()` with a permit held, or one of the two ways out. */
export interface Waiter extends DeadlineEntry {
  next: Waiter | undefined
  previous: Waiter | undefined
  /** True while it is in the queue. */
  waiting: boolean
  /** Its priority level: 0 is served first. Read once, at `enqueue`; default 0. */
  level?: number
  /** When it joined the queue (limiter clock ms); written by a CoDel limiter. */
  enqueuedAt?: number
  admitted(): void
  /** Its wait ran out (its deadline, or CoDel's allowed wait). It has left the queue. */
  waitExpired(): void
  /** A waiter of a higher priority took its place in a full queue. It has left the queue. */
  evicted?(): void
}

/**
 * Facebook's CoDel for a request queue: a wait is allowed `intervalMs`, and once the queue has been non-empty
 * for longer than that (a standing queue) only `targetMs`, and the newest waiter goes first (LIFO): under
 * overload the requests still worth answering are the fresh ones.
 */
export interface CoDel {
  readonly targetMs: number
  readonly intervalMs: number
}

/** How the limiter queues beyond one FIFO level. */
export interface LimiterQueueing {
  /** Share of the limit each priority level may use (`1` = all of it); one entry per level. Default `[1]`. */
  readonly shares?: readonly number[]
  /** CoDel waiting: waits timed from `enqueue`, LIFO once standing. Default: FIFO, deadlines given to `enqueue`. */
  readonly codel?: CoDel
  /** Called when an adaptive limit moved, before the freed permits go to waiters. */
  readonly onLimitChange?: (previous: number) => void
}

/** @internal Permits up to a limit, then a bounded queue (per priority level). */
export class ConcurrencyLimiter {
  readonly #limit: AdaptiveLimit
  readonly queueSize: number
  inflight = 0
  queued = 0
  readonly #heads: (Waiter | undefined)[]
  readonly #tails: (Waiter | undefined)[]
  readonly #shares: readonly number[]
  /** The limit each level may use, recomputed when the limit moves. */
  readonly #capacities: number[]
  readonly #codel: CoDel | undefined
  readonly #onLimitChange: ((previous: number) => void) | undefined
  readonly #now: Clock
  readonly #waits: DeadlineQueue<Waiter>
  /** When the queue last went from empty to non-empty (CoDel: a standing queue is one older than intervalMs). */
  #nonEmptySince = 0

  constructor(
    option: string,
    limit: number | LimitAlgorithm['name'] | LimitOptions,
    queueSize: number,
    clock: Clock = monotonicNow,
    queueing: LimiterQueueing = {},
  ) {
    this.#limit = new AdaptiveLimit(option, limit, clock)
    this.queueSize = queueSize
    this.#now = clock
    this.#shares = queueing.shares ?? [1]
    this.#heads = this.#shares.map(() => undefined)
    this.#tails = this.#shares.map(() => undefined)
    this.#capacities = this.#shares.map(() => 0)
    this.#setCapacities()
    this.#codel = queueing.codel
    this.#onLimitChange = queueing.onLimitChange
    this.#waits = new DeadlineQueue<Waiter>((waiter) => this.#deadlinePassed(waiter), clock)
  }

  get limit(): number {
    return this.#limit.limit
  }

  get adaptive(): boolean {
    return !this.#limit.isStatic
  }

  get algorithm(): LimitAlgorithm['name'] {
    return this.#limit.algorithm
  }

  /** Mean latency (ms) of the window that last moved an adaptive limit. */
  get lastRttMs(): number {
    return this.#limit.lastRttMs
  }

  /** The limit `level` may use: the whole limit, or its share of it (at least 1). */
  capacity(level = 0): number {
    return this.#capacities[level] as number
  }

  /**
   * Whether work of `level` may take a permit now: there is room at its level, and nobody of its level or above
   * is waiting (a newcomer does not jump the queue unless it outranks everyone waiting).
   */
  canAcquire(level = 0): boolean {
    return this.inflight < (this.#capacities[level] as number) && (this.queued === 0 || !this.#waitingAtOrAbove(level))
  }

  /** Take a permit if {@link canAcquire}. */
  tryAcquire(level = 0): boolean {
    if (!this.canAcquire(level)) return false
    this.inflight++
    return true
  }

  /** Take a permit whatever the limit says (a dry run admits what it would have refused). Returns `inflight`. */
  hold(): number {
    return ++this.inflight
  }

  /**
   * Queue `waiter` until a permit frees or its wait runs out: at `deadlineAt` (monotonic ms on the limiter's
   * clock), or CoDel's allowed wait. A full queue evicts its newest waiter of a lower level, if any, for it;
   * false when there is none (the waiter is not queued).
   */
  enqueue(waiter: Waiter, deadlineAt = Number.POSITIVE_INFINITY): boolean {
    const codel = this.#codel
    let now = 0
    if (codel !== undefined) {
      now = this.#now()
      this.#expire(now)
      waiter.enqueuedAt = now
      deadlineAt = now + codel.intervalMs
    }
    const level = waiter.level ?? 0
    if (this.queued >= this.queueSize) {
      let victim: Waiter | undefined
      for (let p = this.#shares.length - 1; p > level && victim === undefined; p--) victim = this.#tails[p]
      if (victim === undefined) return false
      this.leave(victim)
      victim.evicted?.()
    }
    if (this.queued === 0) this.#nonEmptySince = now
    waiter.waiting = true
    waiter.next = undefined
    const tail = this.#tails[level]
    waiter.previous = tail
    if (tail === undefined) this.#heads[level] = waiter
    else tail.next = waiter
    this.#tails[level] = waiter
    this.queued++
    this.#waits.add(waiter, deadlineAt)
    return true
  }

  /** Take a waiter out of the queue (its caller left, or its wait expired). It held no permit: none is freed. */
  leave(waiter: Waiter): void {
    if (!waiter.waiting) return
    waiter.waiting = false
    this.#waits.remove(waiter)
    const level = waiter.level ?? 0
    const { previous, next } = waiter
    if (previous === undefined) this.#heads[level] = next
    else previous.next = next
    if (next === undefined) this.#tails[level] = previous
    else next.previous = previous
    waiter.next = waiter.previous = undefined
    this.queued--
  }

  /** CoDel: the queue has been non-empty for longer than `intervalMs`. */
  standing(now: number): boolean {
    return this.queued > 0 && this.#codel !== undefined && now - this.#nonEmptySince > this.#codel.intervalMs
  }

  /**
   * Give a permit back. An adaptive limit is fed the latency since `admittedAt` (or told of a drop); `ignored`
   * outcomes (the caller left) feed nothing. True when the limit changed. Waiters take the freed permits.
   */
  release(outcome: 'success' | 'dropped' | 'ignored', admittedAt: number, inflightAtStart: number): boolean {
    this.inflight--
    let changed = false
    if (outcome !== 'ignored' && !this.#limit.isStatic) {
      const previous = this.#limit.limit
      changed = this.#limit.sample(admittedAt, inflightAtStart, this.inflight, outcome === 'dropped')
      if (changed) {
        this.#setCapacities()
        this.#onLimitChange?.(previous)
      }
    }
    if (this.queued > 0) this.#drain()
    return changed
  }

  /** Admit waiters while there is room: best level first; FIFO, or LIFO once a CoDel queue is standing. */
  #drain(): void {
    let lifo = false
    if (this.#codel !== undefined) {
      const now = this.#now()
      this.#expire(now)
      lifo = this.standing(now)
    }
    const levels = this.#shares.length
    while (this.queued > 0) {
      let waiter: Waiter | undefined
      for (let p = 0; p < levels && waiter === undefined; p++) {
        if (this.#heads[p] === undefined) continue
        if (this.inflight >= (this.#capacities[p] as number)) return
        waiter = lifo ? this.#tails[p] : this.#heads[p]
      }
      if (waiter === undefined) return
      this.leave(waiter)
      this.inflight++
      waiter.admitted()
    }
  }

  /** CoDel: shed waiters past their allowed wait — `intervalMs`, or `targetMs` once the queue is standing. */
  #expire(now: number): void {
    const codel = this.#codel as CoDel
    if (this.queued === 0) return
    const allowed = this.standing(now) ? codel.targetMs : codel.intervalMs
    for (let p = 0; p < this.#shares.length; p++) {
      // Each level is in arrival order (LIFO takes from the tail): the oldest waiter is at the head.
      for (let waiter = this.#heads[p]; waiter !== undefined; waiter = this.#heads[p]) {
        if (now - (waiter.enqueuedAt as number) <= allowed) break
        this.leave(waiter)
        waiter.waitExpired()
      }
    }
  }

  #deadlinePassed(waiter: Waiter): void {
    if (this.#codel !== undefined) this.#expire(this.#now())
    if (!waiter.waiting) return
    this.leave(waiter)
    waiter.waitExpired()
  }

  #waitingAtOrAbove(level: number): boolean {
    for (let p = 0; p <= level; p++) if (this.#heads[p] !== undefined) return true
    return false
  }

  #setCapacities(): void {
    const limit = this.#limit.limit
    for (let p = 0; p < this.#shares.length; p++) {
      const share = this.#shares[p] as number
      this.#capacities[p] = share === 1 ? limit : Math.max(1, Math.floor(limit * share))
    }
  }
}
