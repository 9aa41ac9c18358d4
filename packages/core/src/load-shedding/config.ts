// Load shedding's options, checked once into a readonly config: the shedder itself never validates. The 503
// answers are built here too, one frozen decision per `Retry-After` value.

import type { RejectDecision } from '../decision.js'
import { ErrorCode, InvalidOptionError } from '../errors.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { knownOptions, nonNegativeNumber, optionKeys, positiveInteger } from '../internal/validate.js'
import { PROBLEM_CONTENT_TYPE, ProblemType } from '../problem.js'
import type { RequestView } from '../request-view.js'
import type { LimitOptions } from './limits.js'
import type { PressureOptions } from './pressure.js'

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

/** @internal Load shedding's options, checked and with their defaults. */
export interface LoadSheddingConfig {
  readonly id: string
  /** Checked by the limiter that runs it (its algorithm's options are the limit algorithms'). */
  readonly limit: number | 'gradient2' | 'aimd' | 'vegas' | LimitOptions
  readonly sheddableShare: number
  /** 0: no queue. */
  readonly queueSize: number
  readonly targetMs: number
  readonly intervalMs: number
  readonly classify: ((request: RequestView) => Priority | undefined) | undefined
  readonly excluded: ((request: RequestView) => boolean) | undefined
  readonly dryRun: boolean | ((request: RequestView) => boolean)
  readonly clock: Clock
  readonly random: () => number
  /** One 503 per `Retry-After` value of the range. */
  readonly rejections: readonly RejectDecision[]
  readonly pressure: PressureOptions | undefined
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

/** @internal Check load shedding's options once; an invalid one throws {@link InvalidOptionError} naming it. */
export function resolveLoadSheddingConfig(options: LoadSheddingOptions): LoadSheddingConfig {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('loadShedding', options, OPTIONS)
  const id = options.id ?? 'load-shedding'
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
    throw new InvalidOptionError('id', id, 'a non-empty string of at most 64 characters')
  }
  const share = options.sheddableShare ?? 0.75
  if (typeof share !== 'number' || !(share > 0 && share <= 1)) {
    throw new InvalidOptionError('sheddableShare', share, 'a number in (0, 1]')
  }
  const queue = options.queue ?? false
  if (typeof queue !== 'boolean' && (typeof queue !== 'object' || queue === null)) {
    throw new InvalidOptionError('queue', queue, 'a boolean or queue options')
  }
  const queueOptions = queue === true ? {} : queue === false ? undefined : queue
  if (options.priority !== undefined && typeof options.priority !== 'function') {
    throw new InvalidOptionError('priority', options.priority, 'a function of the request')
  }
  const dryRun = options.dryRun ?? false
  if (typeof dryRun !== 'boolean' && typeof dryRun !== 'function') {
    throw new InvalidOptionError('dryRun', dryRun, 'a boolean or a function of the request')
  }
  const clock = options.clock ?? monotonicNow
  if (typeof clock !== 'function') throw new InvalidOptionError('clock', options.clock, 'a function')
  const random = options.random ?? Math.random
  if (typeof random !== 'function') throw new InvalidOptionError('random', options.random, 'a function')
  if (options.pressure !== undefined && (typeof options.pressure !== 'object' || options.pressure === null)) {
    throw new InvalidOptionError('pressure', options.pressure, 'pressure options')
  }
  return Object.freeze({
    id,
    limit: options.limit ?? 'gradient2',
    sheddableShare: share,
    queueSize: queueOptions === undefined ? 0 : positiveInteger('queue.size', queueOptions.size ?? 50),
    targetMs: positive('queue.targetMs', queueOptions?.targetMs ?? 5),
    intervalMs: positive('queue.intervalMs', queueOptions?.intervalMs ?? 100),
    classify: options.priority,
    excluded: compileExclude(options.exclude),
    dryRun,
    clock,
    random,
    rejections: rejections(options.retryAfterSeconds ?? [1, 5], options.message),
    pressure: options.pressure,
  })
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
