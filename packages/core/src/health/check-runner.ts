// Runs one health check so that probes never hammer a dependency: each run is cut at the check's timeout,
// its result is reused for a while (or refreshed in the background), and concurrent probes share one run.

import { BreakwaterError, ErrorCode, InvalidOptionError } from '../errors.js'
import { channels, publish } from '../events.js'
import { type Clock, monotonicNow } from '../internal/clock.js'
import { duration } from '../internal/validate.js'
import type { CheckOutcome, CheckReport, HealthCheck, HealthStatus } from './types.js'

/** Component and measurement names: what the health+json key format and a metrics label can carry. */
const NAME = /^[A-Za-z0-9_.-]{1,64}$/
const DEFAULT_CHECK_TIMEOUT_MS = 500

/** A check's result as the health body reports it, plus what the aggregate needs. */
export interface CheckResult extends CheckReport {
  readonly key: string
  readonly critical: boolean
}

/** @internal One check with its cache and its in-flight run. */
export class CheckRunner {
  readonly key: string
  readonly critical: boolean
  readonly #check: HealthCheck['check']
  readonly #timeoutMs: number
  readonly #cacheMs: number
  readonly #now: Clock
  #last: CheckResult | undefined
  #lastAt = Number.NEGATIVE_INFINITY
  #inflight: Promise<CheckResult> | undefined

  constructor(check: HealthCheck, index: number, cacheMs: number, now: Clock = monotonicNow) {
    if (typeof check !== 'object' || check === null)
      throw new InvalidOptionError(`checks[${index}]`, check, 'an object')
    if (typeof check.name !== 'string' || !NAME.test(check.name)) {
      throw new InvalidOptionError(`checks[${index}].name`, check.name, 'letters, digits, ".", "_" or "-" (1–64)')
    }
    const measurement = check.measurement ?? 'responseTime'
    if (typeof measurement !== 'string' || !NAME.test(measurement)) {
      throw new InvalidOptionError(`checks[${index}].measurement`, measurement, 'letters, digits, ".", "_" or "-"')
    }
    if (typeof check.check !== 'function') {
      throw new InvalidOptionError(`checks[${index}].check`, check.check, 'a function (signal) => Promise')
    }
    const critical = check.critical ?? true
    if (typeof critical !== 'boolean') throw new InvalidOptionError(`checks[${index}].critical`, critical, 'a boolean')
    this.key = `${check.name}:${measurement}`
    this.critical = critical
    this.#check = check.check
    this.#timeoutMs = duration(`checks[${index}].timeoutMs`, check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS)
    this.#cacheMs = check.cacheMs === undefined ? cacheMs : cacheOrZero(`checks[${index}].cacheMs`, check.cacheMs)
    this.#now = now
  }

  /** The cached result while fresh (or always, with `background`), else the in-flight run, else a new run. */
  result(background: boolean): CheckResult | Promise<CheckResult> {
    const last = this.#last
    if (last !== undefined && (background || this.#now() - this.#lastAt < this.#cacheMs)) return last
    return this.refresh()
  }

  /** Start a run unless one is in flight; every caller meanwhile shares it. */
  refresh(): Promise<CheckResult> {
    if (this.#inflight === undefined) {
      this.#inflight = this.#run().finally(() => {
        this.#inflight = undefined
      })
    }
    return this.#inflight
  }

  async #run(): Promise<CheckResult> {
    const started = this.#now()
    const controller = new AbortController()
    let timer: NodeJS.Timeout | undefined
    const cut = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(
          new BreakwaterError(
            ErrorCode.HealthCheckTimeout,
            `Health check "${this.key}" timed out after ${this.#timeoutMs} ms`,
          ),
        )
        resolve(TIMED_OUT)
      }, this.#timeoutMs)
      timer.unref()
    })
    let outcome: CheckOutcome | undefined
    let error: unknown
    let timedOut = false
    try {
      // Promise.resolve().then: a check that throws synchronously fails like one that rejects.
      const settled = await Promise.race([Promise.resolve().then(() => this.#check(controller.signal)), cut])
      if (settled === TIMED_OUT) {
        timedOut = true
        error = controller.signal.reason
      } else if (typeof settled === 'object' && settled !== null) outcome = settled as CheckOutcome
    } catch (thrown) {
      error = thrown
    } finally {
      clearTimeout(timer)
    }
    const elapsedMs = this.#now() - started
    let status: HealthStatus = error === undefined ? statusOf(outcome?.status) : 'fail'
    if (status === 'fail' && !this.critical) status = 'warn'
    const result: CheckResult = {
      key: this.key,
      critical: this.critical,
      status,
      observedValue: outcome?.observedValue ?? round(elapsedMs),
      observedUnit: outcome?.observedValue === undefined ? 'ms' : outcome.observedUnit,
      time: new Date().toISOString(),
      output: error === undefined ? outcome?.output : messageOf(error),
    }
    if (result.observedUnit === undefined) delete result.observedUnit
    if (result.output === undefined) delete result.output
    this.#last = result
    this.#lastAt = this.#now()
    if (channels.healthCheck.hasSubscribers) {
      publish(channels.healthCheck, {
        check: this.key,
        outcome: timedOut ? 'timed_out' : status,
        critical: this.critical,
        durationSeconds: elapsedMs / 1000,
        error,
      })
    }
    return result
  }
}

const TIMED_OUT = Symbol('timed out')

function statusOf(status: unknown): HealthStatus {
  return status === 'warn' || status === 'fail' ? status : 'pass'
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}

/** A duration that may be 0 (no caching). */
export function cacheOrZero(option: string, value: unknown): number {
  return value === 0 ? 0 : duration(option, value)
}
