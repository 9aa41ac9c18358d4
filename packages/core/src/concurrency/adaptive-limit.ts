// A concurrency limit fed by completed work: the static, Gradient2, AIMD or Vegas algorithm of limits.ts, given
// one window of latencies at a time. The one limit behind both load shedding (requests) and the bulkhead (calls).

import { type Clock, monotonicNow } from '../internal/clock.js'
import {
  createLimitAlgorithm,
  type LimitAlgorithm,
  type LimitOptions,
  type WindowSettings,
} from '../load-shedding/limits.js'

/** @internal The current limit (a whole number ≥ 1) and the window of samples that moves it. */
export class AdaptiveLimit {
  readonly #algorithm: LimitAlgorithm & WindowSettings
  /** A static limit learns nothing from latency: its users skip the clock reads. */
  readonly isStatic: boolean
  /** The limit now: whole units of work in flight, at least 1. */
  limit: number
  /** Mean latency (ms) of the window that last moved the limit. */
  lastRttMs = 0
  readonly #now: Clock
  #windowStart: number
  #windowCount = 0
  #windowSum = 0
  #windowMin = Number.POSITIVE_INFINITY
  #windowInflight = 0
  #windowDropped = false

  constructor(option: string, limit: number | LimitAlgorithm['name'] | LimitOptions, clock: Clock = monotonicNow) {
    this.#algorithm = createLimitAlgorithm(
      option,
      typeof limit === 'number'
        ? { algorithm: 'static', limit }
        : typeof limit === 'string'
          ? ({ algorithm: limit } as LimitOptions)
          : limit,
    )
    this.isStatic = this.#algorithm.name === 'static'
    this.limit = Math.max(1, Math.floor(this.#algorithm.limit))
    this.#now = clock
    this.#windowStart = clock()
  }

  get algorithm(): LimitAlgorithm['name'] {
    return this.#algorithm.name
  }

  /**
   * Feed one completed unit of work: admitted at `admittedAt` (clock ms) with `inflightAtStart` in flight,
   * `dropped` when it timed out or was refused downstream. `inflightNow` seeds the next window. True when the
   * limit changed.
   */
  sample(admittedAt: number, inflightAtStart: number, inflightNow: number, dropped: boolean): boolean {
    const now = this.#now()
    if (dropped) this.#windowDropped = true
    else {
      const rtt = now - admittedAt
      this.#windowSum += rtt
      this.#windowCount++
      if (rtt < this.#windowMin) this.#windowMin = rtt
    }
    if (inflightAtStart > this.#windowInflight) this.#windowInflight = inflightAtStart
    const elapsed = now - this.#windowStart
    const { windowMs, windowSamples } = this.#algorithm
    const samples = this.#windowCount + (this.#windowDropped ? 1 : 0)
    if (elapsed < windowMs || (samples < windowSamples && elapsed < 10 * windowMs)) return false
    const previous = this.limit
    const count = this.#windowCount
    const rttMs = count === 0 ? 0 : this.#windowSum / count
    const next = this.#algorithm.update({
      rttMs,
      minRttMs: count === 0 ? 0 : this.#windowMin,
      inflight: this.#windowInflight,
      dropped: this.#windowDropped,
    })
    this.#windowStart = now
    this.#windowCount = 0
    this.#windowSum = 0
    this.#windowMin = Number.POSITIVE_INFINITY
    this.#windowInflight = inflightNow
    this.#windowDropped = false
    this.lastRttMs = rttMs
    this.limit = Math.max(1, Math.floor(next))
    return this.limit !== previous
  }
}
