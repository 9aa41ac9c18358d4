// Concurrency-limit algorithms: a static limit, and the adaptive Gradient2, AIMD and Vegas of Netflix's
// concurrency-limits, fed one window of completed requests at a time (REFERENCE.md, Load shedding).

import { InvalidOptionError } from '../errors.js'
import { nonNegativeNumber, positiveInteger } from '../internal/validate.js'

/** One window of completed requests, aggregated by the load shedder before the algorithm sees it. */
export interface LimitSample {
  /** Mean latency of the window's successful requests, in ms. */
  readonly rttMs: number
  /** Smallest latency in the window, in ms. */
  readonly minRttMs: number
  /** Most requests in flight while the window's requests ran. */
  readonly inflight: number
  /** True when a request in the window was dropped (answered 503/504: a timeout or an overloaded dependency). */
  readonly dropped: boolean
}

/** A concurrency-limit algorithm. `update` returns the new limit (a real number; the shedder floors it). */
export interface LimitAlgorithm {
  readonly name: 'static' | 'gradient2' | 'aimd' | 'vegas'
  readonly limit: number
  update(sample: LimitSample): number
}

/** Bounds and windows shared by the adaptive algorithms. */
export interface AdaptiveLimitBase {
  /** Limit before the first window. Default `20`. */
  initialLimit?: number
  /** Lowest limit. Default `1`: the algorithm, not a floor, decides how little the service can take. */
  minLimit?: number
  /** Highest limit. Default `1000`. */
  maxLimit?: number
  /** A window of samples closes after at least this many ms… Default `100`. */
  windowMs?: number
  /** …and at least this many completed requests (or after 10 × `windowMs` with any). Default `10`. */
  windowSamples?: number
}

/**
 * Gradient2 (the server default of Netflix concurrency-limits): compares the window's latency with a long-term
 * average; `gradient = clamp(0.5, 1, tolerance · longRtt / shortRtt)`, `newLimit = limit · gradient + queueSize`,
 * smoothed. The limit grows while latency stays near the long-term baseline and shrinks when queueing shows up.
 */
export interface Gradient2Options extends AdaptiveLimitBase {
  algorithm: 'gradient2'
  /** Weight of a new limit against the current one. Default `0.2`. */
  smoothing?: number
  /** Latency ratio tolerated before the limit shrinks. Default `1.5`. */
  tolerance?: number
  /** Samples in the long-term latency average (an exponential moving average). Default `600`. */
  longWindow?: number
  /** Headroom added on top of `limit · gradient`: a number, or a function of the limit. Default `4`. */
  queueSize?: number | ((limit: number) => number)
}

/** AIMD: `limit · backoffRatio` on a drop or a window slower than `timeoutMs`, else `+1` when busy. */
export interface AimdOptions extends AdaptiveLimitBase {
  algorithm: 'aimd'
  /** Multiplier on a drop. Default `0.9`. */
  backoffRatio?: number
  /** A window whose mean latency exceeds this counts as a drop. Default `5000`. */
  timeoutMs?: number
}

/**
 * Vegas: estimates the queue as `ceil(limit · (1 − rttNoLoad / rtt))` and grows or shrinks by `log10(limit)`
 * against α = `alpha · log10(limit)`, β = `beta · log10(limit)`. `rttNoLoad` (the fastest window seen) is
 * re-measured every `probeMultiplier · limit` windows, so a slower baseline is eventually accepted.
 */
export interface VegasOptions extends AdaptiveLimitBase {
  algorithm: 'vegas'
  /** Default `3`. */
  alpha?: number
  /** Default `6`. */
  beta?: number
  /** Weight of a new limit against the current one. Default `1`. */
  smoothing?: number
  /** Windows between baseline probes, per unit of limit. Default `30`. */
  probeMultiplier?: number
}

/** A fixed limit. */
export interface StaticLimitOptions {
  algorithm: 'static'
  /** Requests in flight at most. */
  limit: number
}

/** Which limit, and how it adapts. */
export type LimitOptions = StaticLimitOptions | Gradient2Options | AimdOptions | VegasOptions

/** @internal Resolved window settings of an adaptive limit. */
export interface WindowSettings {
  readonly windowMs: number
  readonly windowSamples: number
}

/** @internal Build the algorithm and its window settings from user options. */
export function createLimitAlgorithm(option: string, options: LimitOptions): LimitAlgorithm & WindowSettings {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError(option, options, 'a number, "gradient2", "aimd", "vegas" or an object')
  }
  switch (options.algorithm) {
    case 'static':
      return staticLimit(positiveInteger(`${option}.limit`, options.limit))
    case 'gradient2':
      return gradient2(option, options)
    case 'aimd':
      return aimd(option, options)
    case 'vegas':
      return vegas(option, options)
    default:
      throw new InvalidOptionError(`${option}.algorithm`, (options as { algorithm?: unknown }).algorithm, algorithms)
  }
}

const algorithms = '"static", "gradient2", "aimd" or "vegas"'

function staticLimit(limit: number): LimitAlgorithm & WindowSettings {
  return { name: 'static', limit, windowMs: 1000, windowSamples: 1, update: () => limit }
}

interface Bounds {
  min: number
  max: number
  initial: number
  windowMs: number
  windowSamples: number
}

function bounds(option: string, options: AdaptiveLimitBase): Bounds {
  const min = positiveInteger(`${option}.minLimit`, options.minLimit ?? 1)
  const max = positiveInteger(`${option}.maxLimit`, options.maxLimit ?? 1000)
  if (max < min) throw new InvalidOptionError(`${option}.maxLimit`, max, `at least minLimit (${min})`)
  const initial = positiveInteger(`${option}.initialLimit`, options.initialLimit ?? Math.min(max, Math.max(min, 20)))
  if (initial < min || initial > max) {
    throw new InvalidOptionError(`${option}.initialLimit`, initial, `between minLimit (${min}) and maxLimit (${max})`)
  }
  return {
    min,
    max,
    initial,
    windowMs: positiveNumber(`${option}.windowMs`, options.windowMs ?? 100),
    windowSamples: positiveInteger(`${option}.windowSamples`, options.windowSamples ?? 10),
  }
}

function positiveNumber(option: string, value: unknown): number {
  if (nonNegativeNumber(option, value) === 0) throw new InvalidOptionError(option, value, 'a finite number > 0')
  return value as number
}

function fraction(option: string, value: unknown, low: number, high: number): number {
  if (typeof value !== 'number' || !(value > low && value <= high)) {
    throw new InvalidOptionError(option, value, `a number in (${low}, ${high}]`)
  }
  return value
}

const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value))

function gradient2(option: string, options: Gradient2Options): LimitAlgorithm & WindowSettings {
  const b = bounds(option, options)
  const smoothing = fraction(`${option}.smoothing`, options.smoothing ?? 0.2, 0, 1)
  const tolerance = fraction(`${option}.tolerance`, options.tolerance ?? 1.5, 0, 100)
  const longWindow = positiveInteger(`${option}.longWindow`, options.longWindow ?? 600)
  const queueOption = options.queueSize ?? 4
  if (typeof queueOption !== 'function') nonNegativeNumber(`${option}.queueSize`, queueOption)
  const queueSize = typeof queueOption === 'function' ? queueOption : () => queueOption
  let limit = b.initial
  let longRtt = 0
  return {
    name: 'gradient2',
    windowMs: b.windowMs,
    windowSamples: b.windowSamples,
    get limit() {
      return limit
    },
    update(sample) {
      const shortRtt = sample.rttMs
      if (!(shortRtt > 0)) return limit
      // The baseline: an exponential moving average of window latencies. It is seeded with the first window's
      // fastest request (a service often starts under load, so the first window's mean may already be queued)
      // and absorbs windows at full weight only while they are within tolerance; slower windows move it ten
      // times slower, so a standing queue cannot teach it that queueing is normal (Gradient2's upward drift),
      // while a dependency that really got slower is still learned.
      if (longRtt === 0) longRtt = sample.minRttMs > 0 ? Math.min(sample.minRttMs, shortRtt) : shortRtt
      else {
        const weight = shortRtt <= tolerance * longRtt ? 1 / longWindow : 1 / (10 * longWindow)
        longRtt += (shortRtt - longRtt) * weight
      }
      // After a burst of slow samples the average sits far above the present: let it come back faster.
      if (longRtt / shortRtt > 2) longRtt *= 0.95
      // Application-limited (not enough load to fill the limit): latency says nothing about the limit.
      if (sample.inflight < limit / 2) return limit
      const gradient = clamp((tolerance * longRtt) / shortRtt, 0.5, 1)
      const target = limit * gradient + queueSize(limit)
      limit = clamp(limit * (1 - smoothing) + target * smoothing, b.min, b.max)
      return limit
    },
  }
}

function aimd(option: string, options: AimdOptions): LimitAlgorithm & WindowSettings {
  const b = bounds(option, options)
  const backoffRatio = fraction(`${option}.backoffRatio`, options.backoffRatio ?? 0.9, 0, 1)
  if (backoffRatio === 1) throw new InvalidOptionError(`${option}.backoffRatio`, 1, 'a number in (0, 1)')
  const timeoutMs = positiveNumber(`${option}.timeoutMs`, options.timeoutMs ?? 5000)
  let limit = b.initial
  return {
    name: 'aimd',
    windowMs: b.windowMs,
    windowSamples: b.windowSamples,
    get limit() {
      return limit
    },
    update(sample) {
      if (sample.dropped || sample.rttMs > timeoutMs) limit = clamp(limit * backoffRatio, b.min, b.max)
      else if (sample.inflight * 2 >= limit) limit = clamp(limit + 1, b.min, b.max)
      return limit
    },
  }
}

function vegas(option: string, options: VegasOptions): LimitAlgorithm & WindowSettings {
  const b = bounds(option, options)
  const alpha = positiveNumber(`${option}.alpha`, options.alpha ?? 3)
  const beta = positiveNumber(`${option}.beta`, options.beta ?? 6)
  if (beta < alpha) throw new InvalidOptionError(`${option}.beta`, beta, `at least alpha (${alpha})`)
  const smoothing = fraction(`${option}.smoothing`, options.smoothing ?? 1, 0, 1)
  const probeMultiplier = positiveInteger(`${option}.probeMultiplier`, options.probeMultiplier ?? 30)
  let limit = b.initial
  let rttNoLoad = 0
  let windows = 0
  return {
    name: 'vegas',
    windowMs: b.windowMs,
    windowSamples: b.windowSamples,
    get limit() {
      return limit
    },
    update(sample) {
      const rtt = sample.rttMs
      if (!(rtt > 0)) return limit
      // Probe: forget the baseline now and then, so a genuinely slower dependency becomes the new normal.
      if (++windows >= probeMultiplier * Math.max(1, Math.floor(limit))) {
        windows = 0
        rttNoLoad = 0
      }
      if (rttNoLoad === 0 || rtt < rttNoLoad) {
        rttNoLoad = rtt
        return limit
      }
      const log = Math.max(1, Math.log10(limit))
      let next = limit
      if (sample.dropped) next = limit - log
      else if (sample.inflight * 2 < limit)
        return limit // application-limited
      else {
        const queue = Math.ceil(limit * (1 - rttNoLoad / sample.rttMs))
        if (queue <= log) next = limit + beta * log
        else if (queue < alpha * log) next = limit + log
        else if (queue > beta * log) next = limit - log
        else return limit
      }
      limit = clamp(limit * (1 - smoothing) + clamp(next, b.min, b.max) * smoothing, b.min, b.max)
      return limit
    },
  }
}
