// The interceptor: finds the dependency guarding a dispatch's origin and runs the dispatch as a call through it;
// dispatches to other origins, and upgrades (WebSocket, CONNECT), go on untouched.

import {
  type Dependency,
  type DependencyOptions,
  dependency,
  InvalidOptionError,
  knownOptions,
  optionKeys,
} from '@breakwater/core'
import type { Dispatcher } from 'undici'
import { Call, type CallContext, type Dispatch, type DispatchOptions, type Handler } from './call.js'
import { bodyKind, idempotentRequest } from './request-shape.js'

/** Options of {@link breakwater}. */
export interface BreakwaterOptions {
  /**
   * Which dependency guards which origin: a record from origin (`'https://inventory.internal:8443'`) to a
   * `dependency()` or to the options of one (then named after the origin's host), or a function from the
   * request's origin to a dependency (`undefined`: not guarded). Requests to other origins pass through untouched.
   */
  dependencies: Record<string, Dependency | DependencyOptions> | ((origin: string) => Dependency | undefined)
  /**
   * The caller's request context for the call being made, e.g. from your own `AsyncLocalStorage` filled with
   * `req.breakwater`: its signal aborts the call, its deadline bounds it, and its `forwardHeaders()` are sent
   * (capped to what the attempt has left). Default: none.
   */
  context?: () => CallContext | undefined
  /**
   * Largest request body of declared length read into memory so the call can be retried (undici's `fetch` hands
   * every string/bytes/JSON body over as a one-shot iterable with a `content-length`). Larger bodies, and bodies
   * of unknown length (streams), are sent once and make the call non-idempotent. Default `1_048_576` (1 MiB).
   */
  maxReplayBodyBytes?: number
  /**
   * Largest body of a discarded response (a retried 503) read and dropped so its keep-alive connection returns to
   * the pool; a larger one is aborted, which closes its socket. Default `65_536`.
   */
  maxDumpBytes?: number
}

const OPTIONS = optionKeys<BreakwaterOptions>()(['dependencies', 'context', 'maxReplayBodyBytes', 'maxDumpBytes'])

/** The interceptor shape `Dispatcher.compose()` takes, in terms valid for undici 6 and 7 types alike. */
export type BreakwaterInterceptor = (dispatch: Dispatcher['dispatch']) => Dispatcher['dispatch']

/**
 * An undici interceptor that runs every request to a guarded origin through its Breakwater dependency: the
 * circuit breaker, bulkhead and attempt timeout (and the retry, hedge and fallback layers when the dependency has
 * them). One attempt is one dispatch; it settles when the response headers arrive and counts 5xx and 429 as
 * failures; `Retry-After` reaches the retry. The caller's handler sees only the accepted attempt's response, and
 * never a retry after it has seen headers.
 *
 * @example
 * import { dependency } from '@breakwater/core'
 * import { breakwater } from '@breakwater/undici'
 * import { Agent, fetch } from 'undici'
 *
 * const inventory = dependency('inventory', { breaker: { consecutiveFailures: 5 }, attemptTimeoutMs: 300 })
 * const dispatcher = new Agent().compose(breakwater({ dependencies: { 'http://127.0.0.1:4000': inventory } }))
 * export const stock = (sku: string) => fetch(`http://127.0.0.1:4000/inventory/${sku}`, { dispatcher })
 */
export function breakwater(options: BreakwaterOptions): BreakwaterInterceptor {
  knownOptions('breakwater() (@breakwater/undici)', options, OPTIONS)
  const lookup = resolver(options.dependencies)
  const context = options.context
  if (context !== undefined && typeof context !== 'function') {
    throw new InvalidOptionError('context', context, 'a function returning the caller’s request context')
  }
  const settings = {
    maxReplayBodyBytes: byteCount('maxReplayBodyBytes', options.maxReplayBodyBytes, 1_048_576),
    maxDumpBytes: byteCount('maxDumpBytes', options.maxDumpBytes, 65_536),
  }
  return ((dispatch: Dispatch): Dispatch =>
    function breakwaterDispatch(opts: DispatchOptions, handler: Handler): boolean {
      const origin = opts.origin
      const guard =
        origin === undefined ? undefined : lookup(typeof origin === 'string' ? origin : (origin as URL).origin)
      if (guard === undefined || opts.upgrade != null || opts.method === 'CONNECT') return dispatch(opts, handler)
      if (typeof handler.onResponseStart !== 'function') {
        // undici 6's compose hands interceptors the older handler API, which this interceptor does not speak.
        throw new TypeError(
          '@breakwater/undici needs undici 7’s handler API: compose it on an Agent from undici 7 (npm i undici@7)',
        )
      }
      const kind = bodyKind(opts.body, opts.headers, settings.maxReplayBodyBytes)
      const call = new Call(dispatch, opts, handler, context?.(), kind, settings)
      call.start(guard, idempotentRequest(opts.method, opts.headers))
      return true
    }) as unknown as BreakwaterInterceptor
}

function resolver(
  dependencies: BreakwaterOptions['dependencies'] | undefined,
): (origin: string) => Dependency | undefined {
  if (typeof dependencies === 'function') return (origin) => dependencies(origin) ?? undefined
  if (typeof dependencies !== 'object' || dependencies === null) {
    throw new InvalidOptionError(
      'dependencies',
      dependencies,
      'a record from origin to dependency (or its options), or a function of the origin',
    )
  }
  const byOrigin = new Map<string, Dependency>()
  for (const [key, value] of Object.entries(dependencies)) {
    let url: URL
    try {
      url = new URL(key)
    } catch {
      throw new InvalidOptionError(`dependencies["${key}"]`, key, 'an origin such as "https://host:port"')
    }
    if (url.origin === 'null' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
      throw new InvalidOptionError(`dependencies["${key}"]`, key, 'an origin (scheme, host, port; no path)')
    }
    byOrigin.set(url.origin, isDependency(value) ? value : dependency(url.host.slice(0, 64), value))
  }
  return (origin) => {
    const found = byOrigin.get(origin)
    if (found !== undefined || byOrigin.size === 0) return found
    // `Agent.request({ origin })` may spell an origin with a trailing slash or upper case; fetch never does.
    try {
      return byOrigin.get(new URL(origin).origin)
    } catch {
      return undefined
    }
  }
}

function isDependency(value: unknown): value is Dependency {
  return typeof (value as Dependency | null)?.execute === 'function'
}

function byteCount(option: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'a whole number of bytes ≥ 0')
  }
  return value
}
