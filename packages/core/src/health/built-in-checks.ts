// Checks of the process itself: event-loop delay and heap use. They read local counters (no I/O), so they are
// cheap enough for every readiness probe, and non-critical by default: a busy replica warns before it fails.

import { monitorEventLoopDelay } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { InvalidOptionError } from '../errors.js'
import { knownOptions, optionKeys } from '../internal/validate.js'
import type { HealthCheck, HealthStatus } from './types.js'

/** Options of {@link eventLoopDelayCheck}. */
export interface EventLoopDelayCheckOptions {
  /** Warn when the p99 delay since the previous check exceeds this. Default `100` ms. */
  warnMs?: number
  /** Fail (or warn, when not critical) above this. Default: never. */
  failMs?: number
  /** Default `false`: a slow loop warns; set `true` with `failMs` to take the replica out of rotation. */
  critical?: boolean
}

/** Every option of eventLoopDelayCheck and heapCheck; any other key is an error naming it. */
const LOOP_OPTIONS = optionKeys<EventLoopDelayCheckOptions>()(['warnMs', 'failMs', 'critical'])
const HEAP_OPTIONS = optionKeys<HeapCheckOptions>()(['warnRatio', 'failRatio', 'critical'])

/**
 * Event-loop delay: the p99 of how late timers fired since the previous run (`perf_hooks`
 * `monitorEventLoopDelay`), in ms. A high value means requests queue behind CPU work.
 *
 * @example
 * createHealth({ checks: [eventLoopDelayCheck({ warnMs: 100, failMs: 1_000, critical: true })] })
 */
export function eventLoopDelayCheck(options: EventLoopDelayCheckOptions = {}): HealthCheck {
  knownOptions('eventLoopDelayCheck', options, LOOP_OPTIONS)
  const warnMs = threshold('warnMs', options.warnMs ?? 100)
  const failMs = options.failMs === undefined ? Number.POSITIVE_INFINITY : threshold('failMs', options.failMs)
  // 20 ms resolution: fine enough to see queueing, coarse enough to cost nothing measurable.
  const histogram = monitorEventLoopDelay({ resolution: 20 })
  histogram.enable()
  return {
    name: 'eventloop',
    measurement: 'delay',
    critical: options.critical ?? false,
    check() {
      // Nanoseconds; 0 before the first sample.
      const p99 = histogram.count === 0 ? 0 : histogram.percentile(99) / 1e6
      histogram.reset()
      const status = grade(p99, warnMs, failMs)
      return {
        status,
        observedValue: Math.round(p99 * 100) / 100,
        observedUnit: 'ms',
        output: status === 'pass' ? undefined : `p99 event-loop delay ${p99.toFixed(1)} ms`,
      }
    },
  }
}

/** Options of {@link heapCheck}. */
export interface HeapCheckOptions {
  /** Warn when the used heap exceeds this share of V8's heap limit. Default `0.85`. */
  warnRatio?: number
  /** Fail (or warn, when not critical) above this share. Default: never. */
  failRatio?: number
  /** Default `false`. */
  critical?: boolean
}

/**
 * Heap use: `used_heap_size / heap_size_limit` in percent. Near the limit, garbage collection dominates and the
 * process is about to crash with "heap out of memory".
 *
 * @example
 * createHealth({ checks: [heapCheck({ warnRatio: 0.8, failRatio: 0.95 })] })
 */
export function heapCheck(options: HeapCheckOptions = {}): HealthCheck {
  knownOptions('heapCheck', options, HEAP_OPTIONS)
  const warnRatio = ratio('warnRatio', options.warnRatio ?? 0.85)
  const failRatio = options.failRatio === undefined ? Number.POSITIVE_INFINITY : ratio('failRatio', options.failRatio)
  return {
    name: 'heap',
    measurement: 'utilization',
    critical: options.critical ?? false,
    check() {
      const { used_heap_size: used, heap_size_limit: limit } = getHeapStatistics()
      const share = used / limit
      const status = grade(share, warnRatio, failRatio)
      return {
        status,
        observedValue: Math.round(share * 10_000) / 100,
        observedUnit: 'percent',
        output: status === 'pass' ? undefined : `heap ${(share * 100).toFixed(1)}% of its limit`,
      }
    },
  }
}

function grade(value: number, warn: number, fail: number): HealthStatus {
  return value > fail ? 'fail' : value > warn ? 'warn' : 'pass'
}

function threshold(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'a number of milliseconds ≥ 0')
  }
  return value
}

function ratio(option: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0 && value <= 1)) {
    throw new InvalidOptionError(option, value, 'a ratio in (0, 1]')
  }
  return value
}
