// The concurrency limiter with no HTTP in it: a limit (static or adaptive), permits counted in flight, and a
// bounded FIFO queue whose waits are timed by the deadline queue. The bulkhead runs on it; load shedding shares
// its adaptive limit (AdaptiveLimit) and keeps its own priority queue.

import type { Clock } from '../internal/clock.js'
import { type DeadlineEntry, DeadlineQueue } from '../internal/deadline-queue.js'
import type { LimitAlgorithm, LimitOptions } from '../load-shedding/limits.js'
import { AdaptiveLimit } from './adaptive-limit.js'

/** A queued unit of work. The limiter calls `admitted()` with a permit held, or `waitExpired()` at its deadline. */
export interface Waiter extends DeadlineEntry {
  next: Waiter | undefined
  previous: Waiter | undefined
  /** True while it is in the queue. */
  waiting: boolean
  admitted(): void
  waitExpired(): void
}

const waits = new DeadlineQueue<Waiter>((waiter) => waiter.waitExpired())

/** @internal Permits up to a limit, then a bounded FIFO queue. */
export class ConcurrencyLimiter {
  readonly #limit: AdaptiveLimit
  readonly queueSize: number
  inflight = 0
  queued = 0
  #head: Waiter | undefined = undefined
  #tail: Waiter | undefined = undefined

  constructor(option: string, limit: number | LimitAlgorithm['name'] | LimitOptions, queueSize: number, clock?: Clock) {
    this.#limit = new AdaptiveLimit(option, limit, clock)
    this.queueSize = queueSize
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

  /** Take a permit if one is free and nobody is waiting for it (no queue jumping). */
  tryAcquire(): boolean {
    if (this.inflight < this.#limit.limit && this.queued === 0) {
      this.inflight++
      return true
    }
    return false
  }

  /** Queue `waiter` until a permit frees or `deadlineAt` (monotonic ms) passes; false when the queue is full. */
  enqueue(waiter: Waiter, deadlineAt: number): boolean {
    if (this.queued >= this.queueSize) return false
    waiter.waiting = true
    waiter.next = undefined
    waiter.previous = this.#tail
    if (this.#tail === undefined) this.#head = waiter
    else this.#tail.next = waiter
    this.#tail = waiter
    this.queued++
    waits.add(waiter, deadlineAt)
    return true
  }

  /** Take a waiter out of the queue (its caller left, or its wait expired). It held no permit: none is freed. */
  leave(waiter: Waiter): void {
    if (!waiter.waiting) return
    waiter.waiting = false
    waits.remove(waiter)
    const { previous, next } = waiter
    if (previous === undefined) this.#head = next
    else previous.next = next
    if (next === undefined) this.#tail = previous
    else next.previous = previous
    waiter.next = waiter.previous = undefined
    this.queued--
  }

  /**
   * Give a permit back. An adaptive limit is fed the latency since `admittedAt` (or told of a drop); `ignored`
   * outcomes (the caller left) feed nothing. True when the limit changed. Waiters take the freed permits.
   */
  release(outcome: 'success' | 'dropped' | 'ignored', admittedAt: number, inflightAtStart: number): boolean {
    this.inflight--
    const changed =
      outcome !== 'ignored' &&
      !this.#limit.isStatic &&
      this.#limit.sample(admittedAt, inflightAtStart, this.inflight, outcome === 'dropped')
    if (this.queued > 0) this.#drain()
    return changed
  }

  #drain(): void {
    while (this.#head !== undefined && this.inflight < this.#limit.limit) {
      const waiter = this.#head
      this.leave(waiter)
      this.inflight++
      waiter.admitted()
    }
  }
}
