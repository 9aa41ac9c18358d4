// Public types of health probes: checks, their results, the overload contract and the probe answers, in the
// vocabulary of `application/health+json` (draft-inadarei-api-health-check).

import type { Duration } from '../internal/validate.js'
import type { HeaderList, RequestView } from '../request-view.js'

/** `pass` and `warn` answer 200, `fail` answers 503. */
export type HealthStatus = 'pass' | 'warn' | 'fail'

/** The three Kubernetes probes. */
export type ProbeKind = 'live' | 'ready' | 'startup'

/**
 * What a check may return. Returning nothing means `pass`, with the check's response time as its measurement.
 *
 * @example
 * const outcome: CheckOutcome = { status: 'warn', observedValue: 93, observedUnit: 'percent', output: 'disk filling up' }
 */
export interface CheckOutcome {
  /** Default `pass`. A non-critical check's `fail` is reported as `warn`. */
  status?: HealthStatus
  /** The measured value (e.g. a queue length). Default: the check's response time in ms. */
  observedValue?: unknown
  /** Unit of `observedValue` (`ms`, `percent`, `bytes`, …). */
  observedUnit?: string
  /** A human-readable explanation, shown only to authorized callers. */
  output?: string
}

/**
 * One dependency check, run by readiness (never by liveness).
 *
 * @example
 * const database: HealthCheck = {
 *   name: 'postgres',
 *   check: (signal) => pool.query({ text: 'SELECT 1', signal }),
 *   timeoutMs: 300,
 * }
 */
export interface HealthCheck {
  /** The component: `postgres`, `redis`, `payments-api`. Letters, digits, `.`, `_`, `-`. Required. */
  name: string
  /** The measurement in the `component:measurement` key. Default `"responseTime"`. */
  measurement?: string
  /**
   * The check. Resolve (with nothing or a {@link CheckOutcome}) for healthy; throw or reject for failing. It gets
   * a signal aborted at `timeoutMs`: pass it on so a cut check also stops its work.
   */
  check(signal: AbortSignal): unknown
  /**
   * Cut the check after this long (it then fails). Default `500` ms: several checks run in parallel, and the
   * whole probe must answer within the prober's own timeout (Kubernetes `timeoutSeconds` defaults to 1 s).
   */
  timeoutMs?: Duration
  /** A failing critical check fails readiness (503); a failing non-critical one only warns (200). Default `true`. */
  critical?: boolean
  /** Reuse a result for this long. Default: the health's `cacheMs`. */
  cacheMs?: Duration
}

/**
 * The overload contract: anything that knows whether the process is overloaded (a load shedder). Read
 * synchronously on every readiness probe, so it must be cheap.
 *
 * @example
 * createHealth({ overload: shedder }) // any object with overloadState()
 */
export interface OverloadSource {
  overloadState(): { overloaded: boolean; reasons: string[]; limit?: number; inflight?: number }
}

/** One entry of `checks` in a detailed `application/health+json` body. */
export interface CheckReport {
  status: HealthStatus
  observedValue?: unknown
  observedUnit?: string
  /** ISO 8601 time the value was measured. */
  time: string
  output?: string
  /** Non-standard: whether this check can fail readiness. */
  critical?: boolean
}

/** The `application/health+json` body. Public probes carry only `status`. */
export interface HealthBody {
  status: HealthStatus
  version?: string
  releaseId?: string
  serviceId?: string
  description?: string
  /** Why the probe did not pass (detailed bodies only). */
  output?: string
  checks?: Record<string, CheckReport[]>
}

/** What an adapter sends for a probe. */
export interface ProbeAnswer {
  /** 200 for pass and warn, 503 for fail. */
  statusCode: 200 | 503
  /** `Content-Type: application/health+json` and `Cache-Control: no-store`. */
  headers: HeaderList
  body: HealthBody
  /** `body` serialised. */
  payload: string
}

/** A route an adapter mounts. */
export interface ProbeRoute {
  kind: ProbeKind
  path: string
}

/** Identity fields shown in detailed bodies. */
export interface HealthInfo {
  version?: string
  releaseId?: string
  serviceId?: string
  description?: string
}

/** Options of {@link createHealth} and of every adapter's health routes. */
export interface HealthOptions {
  /** Readiness checks. Default none. */
  checks?: readonly HealthCheck[]
  /** A load shedder (anything with `overloadState()`): readiness fails while it reports overload. */
  overload?: OverloadSource
  /**
   * What overload does to readiness: `fail` (503, default: the balancer sends traffic elsewhere) or `warn`
   * (200 with the overload visible, when every replica overloading at once would leave no endpoints).
   */
  overloadStatus?: 'fail' | 'warn'
  /**
   * Who may see details (checks, outputs, timings, versions). Default: nobody — public probes answer only
   * `{"status":…}`, so a probe never leaks internals. A throwing function counts as "no".
   */
  authorize?: (request: RequestView) => boolean | Promise<boolean>
  /** Probe paths; `false` leaves a probe out. Defaults `/livez`, `/readyz`, `/startupz`. */
  paths?: { live?: string | false; ready?: string | false; startup?: string | false }
  /**
   * Startup is already complete (nothing to warm up). Default `false`: readiness and startup fail until
   * `markStarted()` is called; liveness passes meanwhile so a slow boot is never restarted.
   */
  started?: boolean
  /** Reuse each check's result for this long, so probes never hammer a dependency. Default `1000` ms. */
  cacheMs?: Duration | 0
  /**
   * Run the checks in the background every this many ms instead: probes then always answer from the last run
   * (only the very first probe waits). Default off.
   */
  refreshIntervalMs?: Duration
  /** Shown in detailed bodies. */
  info?: HealthInfo
}
