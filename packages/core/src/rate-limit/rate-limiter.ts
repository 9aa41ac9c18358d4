// The rate-limit policy: resolves a request to a client key, cost and rules, asks the store for one atomic
// decision, and answers with plain data the adapters send. Synchronous end to end on in-process stores.

import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { CONTINUE, type Decision, isPromiseLike, type MaybePromise, type RejectDecision } from '../decision.js'
import { ErrorCode, InvalidOptionError } from '../errors.js'
import {
  channels,
  publish,
  publishStoreError,
  type RateLimitDecisionEvent,
  type RateLimitRefundEvent,
} from '../events.js'
import { monotonicNow } from '../internal/clock.js'
import { evictOverflow } from '../internal/lru.js'
import { onResponseClose, responseEnded } from '../internal/response.js'
import {
  type Duration,
  duration,
  knownOptions,
  nonNegativeNumber,
  oneOf,
  optionKeys,
  positiveInteger,
} from '../internal/validate.js'
import { type WarningLogger, warnOnce } from '../internal/warn.js'
import { PROBLEM_CONTENT_TYPE, type ProblemDetails, ProblemType, problemResponse } from '../problem.js'
import type { HeaderList, RequestView } from '../request-view.js'
import { MemoryRateLimitStore } from '../stores/memory-rate-limit-store.js'
import { StoreGuard } from '../stores/store-guard.js'
import { boundKey, hashKey, ipKey } from './client-key.js'
import { HEADER_FORMATS, type HeaderFormat, RateLimitHeaders } from './headers.js'
import type { Algorithm, RateLimitResult, RateLimitStore, ResolvedRule } from './types.js'

/** A value fixed at construction or computed per request. */
export type PerRequest<T> = T | ((request: RequestView) => MaybePromise<T>)

/** One limit: `limit` units per `windowMs`. */
export interface RateLimitRule {
  /** Policy name shown in headers and problem bodies: `[a-z][a-z0-9_.-]*`. Default `"default"` for the
   * single-rule shorthand, `"p1"`, `"p2"`, … in `rules`. */
  name?: string
  /** Units allowed per window; a function makes it per request (e.g. by plan). */
  limit: PerRequest<number>
  /** Window length: ms, or a string like `"10s"`, `"1m"`, `"1h"`, `"1d"`. */
  windowMs: Duration
  /** Default `"gcra"`. */
  algorithm?: Algorithm
  /** GCRA only: units that may be spent at once. Default `limit` (the whole window's quota). */
  burst?: number
}

/** What to do when the store fails or times out. `{ fallback }` decides with a local store meanwhile. */
export type StoreFailurePolicy = 'fail-open' | 'fail-closed' | { fallback: RateLimitStore }

/** Options of {@link createRateLimiter} and of every framework adapter. */
export interface RateLimitOptions extends Partial<RateLimitRule> {
  /** Several rules decided together: a request denied by one charges none. Replaces the shorthand fields. */
  rules?: RateLimitRule[]
  /** Names the limiter in events and namespaces its store keys. Default `"rate-limit"`. Limiters sharing a
   * store and a name share their counts. */
  id?: string
  /** Client key. Default: the framework's resolved client IP, IPv6 grouped by `ipv6Subnet`. */
  key?: (request: RequestView) => MaybePromise<string>
  /** Bits of an IPv6 address that identify a client, or `false` for whole addresses. Default `64`. */
  ipv6Subnet?: number | false
  /** Units a request costs. Default `1`. */
  cost?: PerRequest<number>
  /** Requests for which this returns true are not counted and get no headers. */
  skip?: (request: RequestView) => MaybePromise<boolean>
  /** Client IPs or keys never limited. */
  allowlist?: readonly string[]
  /** Default `new MemoryRateLimitStore()`. */
  store?: RateLimitStore
  /** Store call timeout in ms. Default `100`. In-process stores are never timed. */
  storeTimeoutMs?: number
  /** Default `"fail-open"`: a broken store must not take the service down with it. */
  onStoreError?: StoreFailurePolicy
  /** Header format(s), or `false` for none. Default `"draft-8"`. */
  headers?: HeaderFormat | readonly HeaderFormat[] | false
  /** Add `pk` (a digest of the client key, never the key) to `RateLimit-Policy`. Default `false`. */
  partitionKey?: boolean
  /** Status of a denied request. Default `429`. */
  statusCode?: number
  /** `detail` of the problem body. Default: "Rate limit exceeded; retry in N seconds." */
  message?: string | ((request: RequestView, result: RateLimitResult) => string)
  /** Skip the store for keys it recently denied until their retry time (remote stores only). Default `true`. */
  denyCache?: boolean
  /** Receives one-time configuration warnings. Default `process.emitWarning`. */
  logger?: WarningLogger
  /**
   * Give back the charge of a request whose response succeeded (by `requestFailed`), e.g. to count only failed
   * logins. The charge is taken before the handler and refunded in the store once the response is complete,
   * one atomic store call (`RateLimitStore.refund`). An aborted response is a failed one, so it stays counted.
   * Default `false`.
   */
  skipSuccessfulRequests?: boolean
  /**
   * Give back the charge of a request whose response failed (by `requestFailed`) or was aborted before it was
   * complete (the client went away). Default `false`.
   */
  skipFailedRequests?: boolean
  /**
   * Whether a complete response counts as failed, for `skipSuccessfulRequests` / `skipFailedRequests`.
   * A function that throws counts the request. Default: status ≥ 400.
   */
  requestFailed?: (request: RequestView, statusCode: number) => boolean
  /**
   * Decide, charge and report exactly as when enforcing — the same events, with `dryRun: true` — but let every
   * request through: roll a new limit out and watch what it would have limited. `true`, or a function of the
   * request (`true` = dry run for that request). Default `false`.
   */
  dryRun?: boolean | ((request: RequestView) => boolean)
  /**
   * Enforce for this percentage of client keys only (0–100); the others run as `dryRun`. Stable per key: a
   * key is enforced in every process and on every request, and raising the percentage keeps the keys already
   * enforced. Default `100`.
   */
  enforcePercent?: number
  /** Send the rate-limit headers on requests decided in dry run (never `Retry-After`). Default `false`. */
  dryRunHeaders?: boolean
}

/** A rate limiter usable with or without HTTP. */
export interface RateLimiter {
  readonly id: string
  /**
   * Decide one request: charge it and answer `continue` (with headers) or `reject` (429 problem). With
   * `skipSuccessfulRequests` / `skipFailedRequests`, pass the request's node:http `response` too: the charge is
   * given back when it closes, if the request turned out not to count.
   */
  check(request: RequestView, response?: ServerResponse): MaybePromise<Decision>
  /** Charge `cost` units against `key` (a client key as the `key` option produces it). */
  consume(key: string, cost?: number, request?: RequestView): Promise<RateLimitResult>
  /** What `consume` would answer, without charging. */
  peek(key: string, cost?: number, request?: RequestView): Promise<RateLimitResult>
  /** Forget `key`'s state (e.g. after a CAPTCHA). */
  reset(key: string): Promise<void>
  /** The client key of a request, as used in the store (before namespacing). */
  keyOf(request: RequestView): MaybePromise<string>
}

interface RuleConfig {
  readonly name: string
  readonly algorithm: Algorithm
  readonly limit: PerRequest<number>
  readonly windowMs: number
  readonly burst: number | undefined
}

const NAME_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/
const DENY_CACHE_MAX = 10_000
const STORE_KEY_CACHE_MAX = 4_096
const DEFAULT_ID = 'rate-limit'
const ALGORITHMS: readonly Algorithm[] = ['gcra', 'sliding-window', 'fixed-window']
const UNKNOWN_CLIENT = 'unknown-client'

/** Which limiters use each store under which ids, to warn about accidental sharing. */
const storeUsers = new WeakMap<RateLimitStore, Set<string>>()

/** Every option of {@link createRateLimiter}; any other key is an error naming it. */
const OPTIONS = optionKeys<RateLimitOptions>()([
  'name',
  'limit',
  'windowMs',
  'algorithm',
  'burst',
  'rules',
  'id',
  'key',
  'cost',
  'skip',
  'allowlist',
  'store',
  'storeTimeoutMs',
  'onStoreError',
  'headers',
  'partitionKey',
  'statusCode',
  'message',
  'denyCache',
  'logger',
  'ipv6Subnet',
  'skipSuccessfulRequests',
  'skipFailedRequests',
  'requestFailed',
  'dryRun',
  'enforcePercent',
  'dryRunHeaders',
])
/** Every field of a rule in `rules`. */
const RULE_FIELDS = optionKeys<RateLimitRule>()(['name', 'limit', 'windowMs', 'algorithm', 'burst'])

/**
 * Create a rate limiter. Options are checked here; an invalid one throws {@link InvalidOptionError}.
 *
 * @example
 * const limiter = createRateLimiter({ limit: 100, windowMs: '1m' })
 * const limiter2 = createRateLimiter({
 *   rules: [{ name: 'burst', limit: 10, windowMs: '1s' }, { name: 'hourly', limit: 1000, windowMs: '1h' }],
 * })
 */
export function createRateLimiter(options: RateLimitOptions = {}): RateLimiter {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  knownOptions('rateLimit', options, OPTIONS)
  const id = options.id ?? DEFAULT_ID
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) {
    throw new InvalidOptionError('id', id, 'a non-empty string of at most 64 characters')
  }
  const rules = resolveRuleConfigs(options)
  const staticRules: ResolvedRule[] | undefined = rules.every((r) => typeof r.limit === 'number')
    ? rules.map((r) => freezeRule(r, r.limit as number, 'limit'))
    : undefined

  const subnet = options.ipv6Subnet ?? 64
  if (subnet !== false && (typeof subnet !== 'number' || !Number.isInteger(subnet) || subnet < 1 || subnet > 128)) {
    throw new InvalidOptionError('ipv6Subnet', subnet, 'an integer from 1 to 128, or false')
  }
  const keyOption = options.key
  if (keyOption !== undefined && typeof keyOption !== 'function') {
    throw new InvalidOptionError('key', keyOption, 'a function of the request returning a string')
  }
  const cost = options.cost ?? 1
  if (typeof cost === 'number') positiveIntegerOrZero('cost', cost)
  else if (typeof cost !== 'function') throw new InvalidOptionError('cost', cost, 'a number or a function')
  const skip = options.skip
  if (skip !== undefined && typeof skip !== 'function') throw new InvalidOptionError('skip', skip, 'a function')
  const allowlist = options.allowlist === undefined ? undefined : new Set(validateAllowlist(options.allowlist))

  const store = options.store ?? new MemoryRateLimitStore()
  if (typeof store !== 'object' || store === null || typeof store.consume !== 'function') {
    throw new InvalidOptionError('store', store, 'a RateLimitStore (an object with consume, peek and reset)')
  }
  const storeTimeoutMs = nonNegativeNumber('storeTimeoutMs', options.storeTimeoutMs ?? 100)
  const failure = resolveFailurePolicy(options.onStoreError)
  const formats = resolveFormats(options.headers)
  const statusCode = options.statusCode ?? 429
  if (!Number.isInteger(statusCode) || statusCode < 400 || statusCode > 599) {
    throw new InvalidOptionError('statusCode', statusCode, 'an HTTP error status (400–599)')
  }
  const message = options.message
  if (message !== undefined && typeof message !== 'string' && typeof message !== 'function') {
    throw new InvalidOptionError('message', message, 'a string or a function')
  }
  const logger = options.logger
  const skipSuccessful = options.skipSuccessfulRequests ?? false
  if (typeof skipSuccessful !== 'boolean') {
    throw new InvalidOptionError('skipSuccessfulRequests', skipSuccessful, 'a boolean')
  }
  const skipFailed = options.skipFailedRequests ?? false
  if (typeof skipFailed !== 'boolean') throw new InvalidOptionError('skipFailedRequests', skipFailed, 'a boolean')
  const requestFailed = options.requestFailed ?? statusFailed
  if (typeof requestFailed !== 'function') {
    throw new InvalidOptionError('requestFailed', requestFailed, 'a function of the request and the status code')
  }
  const dryRunOption = options.dryRun ?? false
  if (typeof dryRunOption !== 'boolean' && typeof dryRunOption !== 'function') {
    throw new InvalidOptionError('dryRun', dryRunOption, 'a boolean or a function of the request')
  }
  const enforcePercent = options.enforcePercent ?? 100
  if (typeof enforcePercent !== 'number' || !(enforcePercent >= 0 && enforcePercent <= 100)) {
    throw new InvalidOptionError('enforcePercent', enforcePercent, 'a number from 0 to 100')
  }
  const dryRunHeaders = options.dryRunHeaders ?? false
  if (typeof dryRunHeaders !== 'boolean') throw new InvalidOptionError('dryRunHeaders', dryRunHeaders, 'a boolean')
  /** Whether a request is decided in dry run; constant `false` (no call) unless a dry-run option is set. */
  const inDryRun: ((request: RequestView | undefined, clientKey: string) => boolean) | undefined =
    dryRunOption === true
      ? () => true
      : dryRunOption === false && enforcePercent >= 100
        ? undefined
        : (request, clientKey) =>
            (typeof dryRunOption === 'function' && request !== undefined && dryRunOption(request) === true) ||
            (enforcePercent < 100 && keyPercentile(clientKey) >= enforcePercent)
  const refunds = skipSuccessful || skipFailed
  if (refunds && typeof store.refund !== 'function') {
    throw new InvalidOptionError(
      'store',
      store,
      'a RateLimitStore with refund() (skipSuccessfulRequests / skipFailedRequests give charges back)',
    )
  }
  const partitionKey = options.partitionKey === true
  const local = store.local === true
  const denyCacheEnabled = !local && options.denyCache !== false
  const guard = local ? undefined : new StoreGuard(storeTimeoutMs)
  const headers = new RateLimitHeaders(formats, staticRules)
  const prefix = `${id}:`

  const users = storeUsers.get(store) ?? new Set<string>()
  storeUsers.set(store, users)
  if (users.has(id) && options.id === undefined) {
    warnOnce(
      'BW_RATE_LIMIT_SHARED_STORE',
      'Two rate limiters share one store under the default id "rate-limit", so they share counts. Give each limiter its own `id` (or the same id on purpose).',
      logger,
    )
  }
  users.add(id)

  /** Keys denied recently by the remote store: key → monotonic time until which they stay denied. */
  const denied = new Map<
    string,
    { until: number; units: number; rules: readonly ResolvedRule[]; result: RateLimitResult }
  >()

  /**
   * Store keys (`<id>:<client key>`) of recent clients. A client's key string usually comes back as the very same
   * string (its socket's address), so a hit is one lookup of an already-hashed string; building and hashing the
   * concatenation anew costs every request of a returning client about 0.7k instructions (counted). Bounded:
   * cleared when full.
   */
  const storeKeys = new Map<string, string>()
  const namespaced = (clientKey: string): string => {
    let key = storeKeys.get(clientKey)
    if (key === undefined) {
      key = prefix + clientKey
      if (storeKeys.size >= STORE_KEY_CACHE_MAX) storeKeys.clear()
      storeKeys.set(clientKey, key)
    }
    return key
  }

  const keyOf = (request: RequestView): MaybePromise<string> => {
    if (keyOption) {
      const k = keyOption(request)
      return isPromiseLike(k) ? k.then(checkKey) : checkKey(k)
    }
    const k = ipKey(request.ip, subnet)
    if (k !== undefined) return k
    warnOnce(
      'BW_RATE_LIMIT_NO_CLIENT_IP',
      'A request had no client IP; such requests share one rate-limit key. Pass a `key` function, or check the framework’s trust-proxy setting.',
      logger,
    )
    return UNKNOWN_CLIENT
  }

  const resolveRules = (request: RequestView | undefined): MaybePromise<readonly ResolvedRule[]> => {
    if (staticRules) return staticRules
    if (request === undefined) throw new InvalidOptionError('request', request, 'a request view for per-request limits')
    const values = rules.map((rule) => (typeof rule.limit === 'function' ? rule.limit(request) : rule.limit))
    if (values.some(isPromiseLike)) {
      return Promise.all(values).then((limits) => rules.map((r, i) => freezeRule(r, limits[i] as number, 'limit()')))
    }
    return rules.map((r, i) => freezeRule(r, values[i] as number, 'limit()'))
  }

  const resolveCost = (request: RequestView | undefined): MaybePromise<number> => {
    if (typeof cost === 'number') return cost
    if (request === undefined) return 1
    const c = cost(request)
    return isPromiseLike(c) ? c.then((v) => positiveIntegerOrZero('cost()', v)) : positiveIntegerOrZero('cost()', c)
  }

  const callStore = (
    operation: 'consume' | 'peek',
    key: string,
    resolved: readonly ResolvedRule[],
    units: number,
  ): MaybePromise<RateLimitResult> => {
    if (guard === undefined) return store[operation](key, resolved, units)
    return guard.run(operation, () => store[operation](key, resolved, units))
  }

  /**
   * Apply the failure policy to a store error: a fallback store's result, `undefined` to let the request
   * through, or {@link STORE_CLOSED} to refuse it.
   */
  const onFailure = (
    error: unknown,
    operation: 'consume' | 'peek',
    key: string,
    resolved: readonly ResolvedRule[],
    units: number,
    started: number,
  ): MaybePromise<RateLimitResult | undefined | typeof STORE_CLOSED> => {
    const action = failure === 'fail-open' ? 'fail-open' : failure === 'fail-closed' ? 'fail-closed' : 'fallback'
    if (channels.storeError.hasSubscribers) {
      publishStoreError(id, operation, error, action, (monotonicNow() - started) / 1000)
    }
    if (failure === 'fail-open') return undefined
    if (failure === 'fail-closed') return STORE_CLOSED
    try {
      const result = failure.fallback[operation](key, resolved, units)
      return isPromiseLike(result) ? result.catch(() => undefined) : result
    } catch {
      return undefined
    }
  }

  const decide = (
    request: RequestView | undefined,
    clientKey: string,
    resolved: readonly ResolvedRule[],
    units: number,
    response: ServerResponse | undefined,
  ): MaybePromise<Decision> => {
    const key = namespaced(clientKey)
    // A refund needs the time the charge was sent, even on an in-process store.
    const started = guard === undefined && response === undefined ? 0 : monotonicNow()
    if (denyCacheEnabled && denied.size > 0) {
      const hit = denied.get(key)
      if (hit !== undefined) {
        const now = monotonicNow()
        // Only a request costing at least as much as the denied one is sure to be denied too.
        if (now < hit.until && hit.rules === resolved && units >= hit.units) {
          return toDecision(request, clientKey, resolved, agedResult(hit.result, hit.until - now), 0)
        }
        if (now >= hit.until) denied.delete(key)
      }
    }
    let pending: MaybePromise<RateLimitResult>
    try {
      pending = callStore('consume', key, resolved, units)
    } catch (error) {
      // Only in-process stores throw synchronously; treat it like any other store failure.
      return failed(error, { request, clientKey, key, resolved, units, started, response })
    }
    // In-process stores answer in this turn: no closure is made for them.
    if (!isPromiseLike(pending)) {
      if (response !== undefined) watchRefund(pending, response, request, store, key, resolved, units, started)
      return finish(pending, request, clientKey, key, resolved, units, started)
    }
    return pending.then(
      (result) => {
        if (response !== undefined) watchRefund(result, response, request, store, key, resolved, units, started)
        return finish(result, request, clientKey, key, resolved, units, started)
      },
      (error: unknown) => failed(error, { request, clientKey, key, resolved, units, started, response }),
    )
  }

  /**
   * After a charge that may not count (`skipSuccessfulRequests` / `skipFailedRequests`), give it back to the
   * store that took it once `response` closes, if the request turned out not to count. One listener per charged
   * request, and `close` fires once: a charge is refunded at most once.
   */
  const watchRefund = (
    result: RateLimitResult,
    response: ServerResponse,
    request: RequestView | undefined,
    charged: RateLimitStore,
    key: string,
    resolved: readonly ResolvedRule[],
    units: number,
    chargedAt: number,
  ): void => {
    if (!result.allowed || units === 0 || typeof charged.refund !== 'function') return
    onResponseClose(response, () => {
      if (!countsAsSkipped(response, request)) return
      const started = monotonicNow()
      const run = () =>
        (charged.refund as NonNullable<RateLimitStore['refund']>)(key, resolved, units, started - chargedAt)
      let pending: MaybePromise<void>
      try {
        pending = guard !== undefined && charged === store ? guard.run('refund', run) : run()
      } catch (error) {
        refundLost(error, started)
        return
      }
      if (isPromiseLike(pending)) pending.then(refunded, (error: unknown) => refundLost(error, started))
      else refunded()
    })
  }

  /** Whether a closed response's request is one the options skip: aborted ones are failed ones. */
  const countsAsSkipped = (response: ServerResponse, request: RequestView | undefined): boolean => {
    if (!responseEnded(response)) return skipFailed
    let failedResponse: boolean
    try {
      // Responses are watched only from check(), which always has the request.
      failedResponse = requestFailed(request as RequestView, response.statusCode) === true
    } catch {
      return false // a throwing predicate counts the request
    }
    return failedResponse ? skipFailed : skipSuccessful
  }

  const refunded = (): void => {
    if (channels.rateLimitRefund.hasSubscribers) {
      publish(channels.rateLimitRefund, { policy: id, outcome: 'refunded' } satisfies RateLimitRefundEvent)
    }
  }

  /** A refund that failed or timed out is not retried: the request stays counted, whatever `onStoreError` says. */
  const refundLost = (error: unknown, started: number): void => {
    publishStoreError(id, 'refund', error, 'fail-closed', (monotonicNow() - started) / 1000)
    if (channels.rateLimitRefund.hasSubscribers) {
      publish(channels.rateLimitRefund, { policy: id, outcome: 'store_error' } satisfies RateLimitRefundEvent)
    }
  }

  /** The store's answer (`undefined`: let through after a failure) as a decision; remembers denials. */
  const finish = (
    result: RateLimitResult | undefined,
    request: RequestView | undefined,
    clientKey: string,
    key: string,
    resolved: readonly ResolvedRule[],
    units: number,
    started: number,
  ): Decision => {
    if (result === undefined) {
      if (channels.rateLimitDecision.hasSubscribers) {
        emitDecision(request, clientKey, 'store_error', [], started, inDryRun?.(request, clientKey) ?? false)
      }
      return CONTINUE
    }
    if (!result.allowed && denyCacheEnabled && result.retryAfterMs > 0) {
      denied.delete(key)
      denied.set(key, { until: monotonicNow() + result.retryAfterMs, units, rules: resolved, result })
      if (denied.size > DENY_CACHE_MAX) evictOverflow(denied, DENY_CACHE_MAX)
    }
    return toDecision(request, clientKey, resolved, result, started)
  }

  /** A store failure, by the failure policy. Only failures pay for the `attempt` object. */
  const failed = (error: unknown, attempt: Attempt): MaybePromise<Decision> => {
    const { request, clientKey, key, resolved, units, started, response } = attempt
    const outcome = onFailure(error, 'consume', key, resolved, units, started)
    const conclude = (r: RateLimitResult | undefined | typeof STORE_CLOSED): Decision => {
      if (r === STORE_CLOSED) {
        const dry = inDryRun?.(request, clientKey) ?? false
        if (channels.rateLimitDecision.hasSubscribers) emitDecision(request, clientKey, 'store_error', [], started, dry)
        return dry ? CONTINUE : STORE_CLOSED_DECISION
      }
      // Only a fallback store charged anything; its charge is the one to give back.
      if (r !== undefined && response !== undefined && typeof failure === 'object') {
        watchRefund(r, response, request, failure.fallback, key, resolved, units, started)
      }
      return finish(r, request, clientKey, key, resolved, units, started)
    }
    return isPromiseLike(outcome) ? outcome.then(conclude) : conclude(outcome)
  }

  const toDecision = (
    request: RequestView | undefined,
    clientKey: string,
    resolved: readonly ResolvedRule[],
    result: RateLimitResult,
    started: number,
  ): Decision => {
    if (inDryRun?.(request, clientKey) === true) return dryRunDecision(request, clientKey, resolved, result, started)
    const pk = partitionKey ? partitionKeyOf(clientKey) : undefined
    const list = formats.length === 0 && result.allowed ? undefined : headers.write(resolved, result, pk)
    if (result.allowed) {
      if (channels.rateLimitDecision.hasSubscribers) emitDecision(request, clientKey, 'allowed', [], started, false)
      return list === undefined || list.length === 0 ? CONTINUE : { action: 'continue', headers: list }
    }
    const violated = violatedRules(resolved, result)
    if (channels.rateLimitDecision.hasSubscribers) {
      emitDecision(request, clientKey, 'limited', violated, started, false)
    }
    const retry = Math.max(1, Math.ceil(result.retryAfterMs / 1000))
    const detail =
      typeof message === 'function' && request !== undefined
        ? message(request, result)
        : typeof message === 'string'
          ? message
          : `Rate limit exceeded; retry in ${retry} second${retry === 1 ? '' : 's'}.`
    const body: ProblemDetails = {
      type: ProblemType.QuotaExceeded,
      title: 'Too Many Requests',
      status: statusCode,
      detail,
      code: ErrorCode.RateLimited,
      'violated-policies': violated,
    }
    return rejection(statusCode, list ?? [['Retry-After', String(retry)]], body)
  }

  /** A decision made in dry run: reported as decided, the request let through (with headers if asked). */
  const dryRunDecision = (
    request: RequestView | undefined,
    clientKey: string,
    resolved: readonly ResolvedRule[],
    result: RateLimitResult,
    started: number,
  ): Decision => {
    if (channels.rateLimitDecision.hasSubscribers) {
      const violated = result.allowed ? [] : violatedRules(resolved, result)
      emitDecision(request, clientKey, result.allowed ? 'allowed' : 'limited', violated, started, true)
    }
    if (!dryRunHeaders || formats.length === 0) return CONTINUE
    const list = headers.write(resolved, result, partitionKey ? partitionKeyOf(clientKey) : undefined)
    // Nothing is refused, so nothing to retry after.
    return { action: 'continue', headers: result.allowed ? list : list.filter(([name]) => name !== 'Retry-After') }
  }

  const emitDecision = (
    request: RequestView | undefined,
    clientKey: string,
    outcome: RateLimitDecisionEvent['outcome'],
    violated: readonly string[],
    started: number,
    dryRun: boolean,
  ): void => {
    if (!channels.rateLimitDecision.hasSubscribers) return
    const durationSeconds = started === 0 ? 0 : (monotonicNow() - started) / 1000
    publish(
      channels.rateLimitDecision,
      new DecisionMessage(id, outcome, violated, clientKey, durationSeconds, dryRun, request),
    )
  }

  const check = (request: RequestView, response?: ServerResponse): MaybePromise<Decision> => {
    // Only a limiter that gives charges back needs the response.
    const watched = refunds ? response : undefined
    if (skip !== undefined) {
      const skipped = skip(request)
      if (isPromiseLike(skipped)) {
        return skipped.then((s) => (s ? skippedDecision(request) : admit(request, watched)))
      }
      if (skipped) return skippedDecision(request)
    }
    return admit(request, watched)
  }

  const skippedDecision = (request: RequestView): Decision => {
    if (channels.rateLimitDecision.hasSubscribers) {
      publish(channels.rateLimitDecision, {
        policy: id,
        outcome: 'skipped',
        violated: [],
        keyHash: '',
        durationSeconds: 0,
        dryRun: dryRunOption === true,
        request,
      } satisfies RateLimitDecisionEvent)
    }
    return CONTINUE
  }

  const admit = (request: RequestView, response: ServerResponse | undefined): MaybePromise<Decision> => {
    if (allowlist?.has(request.ip ?? '')) return skippedDecision(request)
    const k = keyOf(request)
    if (isPromiseLike(k)) return k.then((key) => admitKey(request, key, response))
    return admitKey(request, k, response)
  }

  const admitKey = (
    request: RequestView,
    clientKey: string,
    response: ServerResponse | undefined,
  ): MaybePromise<Decision> => {
    if (allowlist?.has(clientKey)) return skippedDecision(request)
    const resolved = resolveRules(request)
    const units = resolveCost(request)
    if (isPromiseLike(resolved) || isPromiseLike(units)) {
      return Promise.all([resolved, units]).then(([r, u]) => decide(request, clientKey, r, u, response))
    }
    return decide(request, clientKey, resolved, units, response)
  }

  const direct = async (
    operation: 'consume' | 'peek',
    clientKey: string,
    units: number | undefined,
    request: RequestView | undefined,
  ): Promise<RateLimitResult> => {
    const resolved = await resolveRules(request)
    const n = units === undefined ? await resolveCost(request) : positiveIntegerOrZero('cost', units)
    const key = prefix + checkKey(clientKey)
    const started = monotonicNow()
    try {
      return await callStore(operation, key, resolved, n)
    } catch (error) {
      const result = await onFailure(error, operation, key, resolved, n, started)
      if (result === STORE_CLOSED) throw error
      return result ?? { allowed: true, retryAfterMs: 0, rules: [] }
    }
  }

  return {
    id,
    check,
    keyOf,
    consume: (key, units, request) => direct('consume', key, units, request),
    peek: (key, units, request) => direct('peek', key, units ?? 1, request),
    async reset(key) {
      const namespaced = prefix + checkKey(key)
      denied.delete(namespaced)
      // A reset needs the rules' names, not their limits: per-request limits get a placeholder of 1.
      const resetRules = staticRules ?? rules.map((r) => freezeRule(r, 1, 'limit'))
      const run = () => store.reset(namespaced, resetRules)
      await (guard === undefined ? run() : guard.run('reset', run))
    },
  }
}

/** One decision's inputs, as a store failure needs them. */
interface Attempt {
  readonly request: RequestView | undefined
  readonly clientKey: string
  readonly key: string
  readonly resolved: readonly ResolvedRule[]
  readonly units: number
  readonly started: number
  /** Watched for a refund (only with skipSuccessfulRequests / skipFailedRequests). */
  readonly response: ServerResponse | undefined
}

/** The failure policy's answer "refuse the request". */
const STORE_CLOSED = Symbol('store-closed')

const STORE_CLOSED_DECISION: RejectDecision = problemResponse(
  ErrorCode.StoreUnavailable,
  'Rate limiting is temporarily unavailable.',
  [['Retry-After', '1']],
)

function rejection(status: number, headers: HeaderList, body: ProblemDetails): RejectDecision {
  return { action: 'reject', status, headers: [...headers, ['Content-Type', PROBLEM_CONTENT_TYPE]], body }
}

function agedResult(result: RateLimitResult, retryAfterMs: number): RateLimitResult {
  return {
    allowed: false,
    retryAfterMs,
    rules: result.rules.map((r) => (r.allowed ? r : { allowed: false, remaining: r.remaining, resetMs: retryAfterMs })),
  }
}

function violatedRules(resolved: readonly ResolvedRule[], result: RateLimitResult): string[] {
  return resolved.filter((_, i) => result.rules[i]?.allowed === false).map((r) => r.name)
}

/**
 * Where a client key falls in 0–100 (two decimals), the same in every process: FNV-1a over its UTF-16 units.
 * A key under `enforcePercent` is enforced, so raising the percentage only adds keys.
 */
function keyPercentile(clientKey: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < clientKey.length; i++) {
    hash ^= clientKey.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return ((hash >>> 0) % 10_000) / 100
}

/** The default `requestFailed`: an HTTP error status. */
function statusFailed(_request: RequestView, statusCode: number): boolean {
  return statusCode >= 400
}

function partitionKeyOf(clientKey: string): string {
  return createHash('sha256').update(clientKey).digest().subarray(0, 12).toString('base64')
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidOptionError('key()', key, 'a non-empty string')
  }
  return boundKey(key)
}

function positiveIntegerOrZero(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'an integer ≥ 0')
  }
  return value
}

function freezeRule(rule: RuleConfig, limit: number, option: string): ResolvedRule {
  positiveInteger(option === 'limit' ? `${rule.name}.limit` : `${rule.name}.${option}`, limit)
  const burst = rule.burst ?? limit
  return Object.freeze({ name: rule.name, algorithm: rule.algorithm, limit, windowMs: rule.windowMs, burst })
}

function resolveRuleConfigs(options: RateLimitOptions): RuleConfig[] {
  const shorthand = options.limit !== undefined || options.windowMs !== undefined
  if (options.rules !== undefined && shorthand) {
    throw new InvalidOptionError('rules', options.rules, 'either `rules` or `limit`/`windowMs`, not both')
  }
  const list: RateLimitRule[] =
    options.rules ??
    (shorthand
      ? [
          {
            name: options.name ?? 'default',
            limit: options.limit as PerRequest<number>,
            windowMs: options.windowMs as Duration,
            ...(options.algorithm === undefined ? {} : { algorithm: options.algorithm }),
            ...(options.burst === undefined ? {} : { burst: options.burst }),
          },
        ]
      : [])
  if (!Array.isArray(list) || list.length === 0) {
    throw new InvalidOptionError('limit', options.limit, 'a limit and windowMs, or a non-empty `rules` array')
  }
  const names = new Set<string>()
  return list.map((rule, i) => {
    const at = options.rules ? `rules[${i}]` : ''
    const field = (f: string): string => (at ? `${at}.${f}` : f)
    if (typeof rule !== 'object' || rule === null) throw new InvalidOptionError(at, rule, 'a rule object')
    if (at) knownOptions(at, rule, RULE_FIELDS)
    const name = rule.name ?? (options.rules ? `p${i + 1}` : 'default')
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      throw new InvalidOptionError(field('name'), name, 'a name matching [a-z][a-z0-9_.-]* (at most 64 characters)')
    }
    if (names.has(name)) throw new InvalidOptionError(field('name'), name, 'a name unique among the rules')
    names.add(name)
    if (typeof rule.limit === 'number') positiveInteger(field('limit'), rule.limit)
    else if (typeof rule.limit !== 'function') {
      throw new InvalidOptionError(field('limit'), rule.limit, 'a positive integer or a function of the request')
    }
    const windowMs = duration(field('windowMs'), rule.windowMs)
    const algorithm = oneOf(field('algorithm'), rule.algorithm ?? 'gcra', ALGORITHMS)
    if (rule.burst !== undefined) {
      positiveInteger(field('burst'), rule.burst)
      if (algorithm !== 'gcra') throw new InvalidOptionError(field('burst'), rule.burst, 'no burst (GCRA only)')
    }
    return { name, algorithm, limit: rule.limit, windowMs, burst: rule.burst }
  })
}

function resolveFailurePolicy(value: unknown): StoreFailurePolicy {
  if (value === undefined) return 'fail-open'
  if (value === 'fail-open' || value === 'fail-closed') return value
  if (typeof value === 'object' && value !== null) {
    const fallback = (value as { fallback?: RateLimitStore }).fallback
    if (typeof fallback === 'object' && fallback !== null && typeof fallback.consume === 'function') {
      return { fallback }
    }
  }
  throw new InvalidOptionError('onStoreError', value, '"fail-open", "fail-closed" or { fallback: RateLimitStore }')
}

function resolveFormats(value: unknown): readonly HeaderFormat[] {
  if (value === undefined) return ['draft-8']
  if (value === false) return []
  const list = Array.isArray(value) ? value : [value]
  return list.map((f, i) => oneOf(Array.isArray(value) ? `headers[${i}]` : 'headers', f, HEADER_FORMATS))
}

function validateAllowlist(value: unknown): string[] {
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new InvalidOptionError('allowlist', value, 'an array of IPs or client keys')
  }
  return value as string[]
}

/**
 * A `breakwater:rate-limit:decision` payload whose `keyHash` is computed on first read: a SHA-256 per decision was
 * most of what a subscriber that never reads it (metrics) cost each request. The raw key stays in a private field.
 */
class DecisionMessage implements RateLimitDecisionEvent {
  readonly policy: string
  readonly outcome: RateLimitDecisionEvent['outcome']
  readonly violated: readonly string[]
  readonly durationSeconds: number
  readonly dryRun: boolean
  readonly request: RequestView | undefined
  readonly #clientKey: string
  #keyHash: string | undefined = undefined

  constructor(
    policy: string,
    outcome: RateLimitDecisionEvent['outcome'],
    violated: readonly string[],
    clientKey: string,
    durationSeconds: number,
    dryRun: boolean,
    request: RequestView | undefined,
  ) {
    this.policy = policy
    this.outcome = outcome
    this.violated = violated
    this.#clientKey = clientKey
    this.durationSeconds = durationSeconds
    this.dryRun = dryRun
    this.request = request
  }

  get keyHash(): string {
    if (this.#keyHash === undefined) this.#keyHash = hashKey(this.#clientKey)
    return this.#keyHash
  }

  /** The plain payload (what JSON.stringify and loggers see), `keyHash` included. */
  toJSON(): RateLimitDecisionEvent {
    const { policy, outcome, violated, keyHash, durationSeconds, dryRun, request } = this
    return { policy, outcome, violated, keyHash, durationSeconds, dryRun, request }
  }
}
