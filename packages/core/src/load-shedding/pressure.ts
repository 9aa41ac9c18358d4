// Process pressure signals — event-loop delay, event-loop utilization per interval, heap used, RSS — sampled on
// an unref'd timer and turned into a shedding level between 0 (fine) and 1 (shed everything sheddable).

import { type IntervalHistogram, monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { InvalidOptionError } from '../errors.js'
import { nonNegativeNumber } from '../internal/validate.js'

/** Thresholds of the pressure signals; a signal without a threshold is not measured. */
export interface PressureOptions {
  /** How often the signals are read. Default `1000` ms (as @fastify/under-pressure). */
  sampleIntervalMs?: number
  /** Mean event-loop delay over the interval, in ms, above which the process is overloaded. Default: off. */
  maxEventLoopDelayMs?: number
  /** Event-loop utilization over the interval (0–1, not cumulative since start). Default: off. */
  maxEventLoopUtilization?: number
  /** `process.memoryUsage().heapUsed` in bytes. Default: off. */
  maxHeapUsedBytes?: number
  /** Resident set size in bytes. Default: off. */
  maxRssBytes?: number
  /**
   * `false` (default): past a threshold the level is 1 — a cliff. `true`, or a width `w` as a fraction of the
   * threshold: the level rises linearly from 0 at the threshold to 1 at `threshold · (1 + w)` (`true` = 1, the
   * toobusy-js curve `(value − max) / max`), so shedding ramps up instead of switching on.
   */
  ramp?: boolean | number
}

/** The last readings of the measured signals (`undefined` for signals without a threshold). */
export interface PressureReadings {
  eventLoopDelayMs: number | undefined
  eventLoopUtilization: number | undefined
  heapUsedBytes: number | undefined
  rssBytes: number | undefined
}

/** Names of the signals, as they appear in `overloadState().reasons`. */
export type PressureSignal = 'event-loop-delay' | 'event-loop-utilization' | 'heap-used' | 'rss'

const RESOLUTION_MS = 10

/** @internal Samples the signals; `level` and `reasons` describe the last sample. */
export class PressureMonitor {
  level = 0
  reasons: PressureSignal[] = []
  readonly readings: PressureReadings = {
    eventLoopDelayMs: undefined,
    eventLoopUtilization: undefined,
    heapUsedBytes: undefined,
    rssBytes: undefined,
  }
  readonly #delay: number | undefined
  readonly #elu: number | undefined
  readonly #heap: number | undefined
  readonly #rss: number | undefined
  readonly #width: number
  readonly #histogram: IntervalHistogram | undefined
  #lastElu = performance.eventLoopUtilization()
  #timer: NodeJS.Timeout | undefined
  readonly #onChange: (monitor: PressureMonitor) => void

  constructor(option: string, options: PressureOptions, onChange: (monitor: PressureMonitor) => void) {
    const threshold = (name: keyof PressureOptions): number | undefined => {
      const value = options[name]
      if (value === undefined) return undefined
      if (nonNegativeNumber(`${option}.${name}`, value) === 0) {
        throw new InvalidOptionError(`${option}.${name}`, value, 'a number > 0')
      }
      return value as number
    }
    this.#delay = threshold('maxEventLoopDelayMs')
    this.#elu = threshold('maxEventLoopUtilization')
    if (this.#elu !== undefined && this.#elu > 1) {
      throw new InvalidOptionError(`${option}.maxEventLoopUtilization`, this.#elu, 'a number in (0, 1]')
    }
    this.#heap = threshold('maxHeapUsedBytes')
    this.#rss = threshold('maxRssBytes')
    const ramp = options.ramp ?? false
    if (typeof ramp !== 'boolean' && !(typeof ramp === 'number' && ramp > 0 && Number.isFinite(ramp))) {
      throw new InvalidOptionError(`${option}.ramp`, ramp, 'a boolean or a number > 0')
    }
    this.#width = ramp === false ? 0 : ramp === true ? 1 : ramp
    const interval = threshold('sampleIntervalMs') ?? 1000
    this.#onChange = onChange
    if (this.#delay !== undefined) {
      this.#histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
      this.#histogram.enable()
    }
    if (this.active) {
      this.#timer = setInterval(() => this.sample(), interval)
      this.#timer.unref()
    }
  }

  /** True when at least one signal has a threshold. */
  get active(): boolean {
    return this.#delay !== undefined || this.#elu !== undefined || this.#heap !== undefined || this.#rss !== undefined
  }

  /** Read every measured signal now and recompute the level (also runs on the timer). */
  sample(): void {
    const readings = this.readings
    const reasons: PressureSignal[] = []
    let level = 0
    const check = (signal: PressureSignal, value: number, max: number | undefined): void => {
      if (max === undefined || value <= max) return
      reasons.push(signal)
      level = Math.max(level, this.#width === 0 ? 1 : Math.min(1, (value - max) / (max * this.#width)))
    }
    if (this.#histogram !== undefined) {
      // The histogram's timer fires every RESOLUTION_MS: what exceeds that is delay.
      const mean = this.#histogram.count > 0 ? this.#histogram.mean / 1e6 - RESOLUTION_MS : 0
      readings.eventLoopDelayMs = Math.max(0, mean)
      this.#histogram.reset()
      check('event-loop-delay', readings.eventLoopDelayMs, this.#delay)
    }
    if (this.#elu !== undefined) {
      const now = performance.eventLoopUtilization()
      readings.eventLoopUtilization = performance.eventLoopUtilization(now, this.#lastElu).utilization
      this.#lastElu = now
      check('event-loop-utilization', readings.eventLoopUtilization, this.#elu)
    }
    if (this.#heap !== undefined) {
      readings.heapUsedBytes = process.memoryUsage().heapUsed
      check('heap-used', readings.heapUsedBytes, this.#heap)
    }
    if (this.#rss !== undefined) {
      readings.rssBytes = process.memoryUsage.rss()
      check('rss', readings.rssBytes, this.#rss)
    }
    const changed = reasons.length !== this.reasons.length || level !== this.level
    this.level = level
    this.reasons = reasons
    if (changed) this.#onChange(this)
  }

  /** Stop sampling. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    this.#histogram?.disable()
  }
}
