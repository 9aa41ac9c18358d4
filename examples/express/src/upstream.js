// The outbound routes of the example contract (ARCHITECTURE.md, "Outbound routes"): GET /api/upstream/inventory
// and /api/upstream/recommendations call UPSTREAM_URL through two named dependencies, each with its own circuit
// breaker, bulkhead and attempt timeout; inventory retries (full jitter, budget 20 % + 5/s), recommendations
// hedges after 50 ms and falls back to an empty list. Mounted only when UPSTREAM_URL is set. Stale answers are not
// here yet.

import { subscribe } from 'node:diagnostics_channel'
import { dependency, isBreakwaterError, isRequestAbortedError, PROBLEM_CONTENT_TYPE } from '@breakwater/core'

/** The upstream answered 5xx (or could not be reached): 502 with this code. */
const UPSTREAM_FAILED = 'BW_UPSTREAM_FAILED'

/**
 * The two dependencies and their per-dependency counters, framework-free.
 * @param {string} baseUrl
 */
function outboundRoutes(baseUrl) {
  const breaker = { consecutiveFailures: 5, openMs: 1000, halfOpenProbes: 1 }
  const inventory = dependency('inventory', {
    breaker,
    bulkhead: { limit: 8, queue: 8, queueTimeoutMs: 100 },
    attemptTimeoutMs: 300,
    retry: { attempts: 3, backoff: 'full-jitter', baseMs: 20, capMs: 200, budget: { ratio: 0.2, perSecond: 5 } },
  })
  const recommendations = dependency('recommendations', {
    breaker,
    bulkhead: { limit: 4 },
    attemptTimeoutMs: 300,
    hedge: { delayMs: 50 },
  })
  const zero = () => ({
    upstreamAttempts: 0,
    upstreamStale: 0,
    upstreamFallback: 0,
    circuitRejected: 0,
    bulkheadRejected: 0,
  })
  const counters = { inventory: zero(), recommendations: zero() }
  /** @type {Record<string, ReturnType<typeof zero> | undefined>} */
  const byName = counters
  // Attempts refused by the breaker or the bulkhead never reach the upstream: counted apart.
  subscribe('breakwater:dependency:attempt', (message) => {
    const event = /** @type {import('@breakwater/core').DependencyAttemptEvent} */ (message)
    const counter = byName[event.policy]
    if (counter === undefined) return
    if (event.outcome === 'circuit_open') counter.circuitRejected++
    else if (event.outcome === 'bulkhead_full') counter.bulkheadRejected++
    else counter.upstreamAttempts++
  })

  /**
   * GET `${baseUrl}${path}` through `target`, with the attempt's own budget in Request-Timeout-Ms.
   * @param {import('@breakwater/core').Dependency} target
   * @param {string} path
   * @param {import('@breakwater/core').RequestLifecycle | undefined} context
   */
  const call = (target, path, context) =>
    target.execute(
      async ({ signal, deadline }) => {
        const left = deadline === Number.POSITIVE_INFINITY ? 300 : Math.max(0, Math.floor(deadline - Date.now()))
        const response = await fetch(`${baseUrl}${path}`, { signal, headers: { 'Request-Timeout-Ms': String(left) } })
        if (response.status >= 500 || response.status === 429) {
          await response.body?.cancel()
          throw Object.assign(new Error(`upstream answered ${response.status}`), {
            upstreamStatus: response.status,
            status: response.status,
          })
        }
        return response.json()
      },
      { context },
    )

  return {
    counters,
    /**
     * 200 with the upstream's JSON; the breaker's and bulkhead's 503 and the deadlines' 504 are thrown to the
     * framework's error path (the timeout error handler answers them); a failed upstream is 502 here.
     * @param {import('@breakwater/core').RequestLifecycle | undefined} context
     * @param {string} search
     */
    async inventory(context, search) {
      try {
        return {
          status: 200,
          body: { source: 'upstream', data: await call(inventory, `/inventory${search}`, context) },
        }
      } catch (error) {
        if (isBreakwaterError(error) || isRequestAbortedError(error)) throw error
        return {
          status: 502,
          body: {
            type: 'about:blank',
            title: 'Bad Gateway',
            status: 502,
            detail: 'The upstream failed.',
            code: UPSTREAM_FAILED,
          },
        }
      }
    },
    /**
     * 200 with the upstream's JSON, or the fallback `{ items: [] }` on every failure (open breaker and full
     * bulkhead included).
     * @param {import('@breakwater/core').RequestLifecycle | undefined} context
     * @param {string} search
     */
    async recommendations(context, search) {
      try {
        return {
          status: 200,
          body: { source: 'upstream', data: await call(recommendations, `/recommendations${search}`, context) },
        }
      } catch (error) {
        if (context?.abortReason !== undefined) throw error // the request itself is over: nobody to answer
        counters.recommendations.upstreamFallback++
        return { status: 200, body: { source: 'fallback', data: { items: [] } } }
      }
    },
  }
}

/** @param {number} status */
const contentType = (status) => (status === 200 ? 'application/json' : PROBLEM_CONTENT_TYPE)

/**
 * Mount the outbound routes on `app` when UPSTREAM_URL is set, and add their counters to `stats.dependencies`.
 * Before the app's timeoutErrorHandler(), which answers the errors they throw.
 * @param {import('express').Express} app
 * @param {Record<string, unknown>} stats
 */
export function mountUpstream(app, stats) {
  const baseUrl = process.env.UPSTREAM_URL
  if (!baseUrl) return
  const routes = outboundRoutes(baseUrl)
  stats.dependencies = routes.counters
  // Node loads its fetch implementation on the first call (tens of ms, more on a busy machine): load it now, so
  // the first request's attempt timeout does not pay for it.
  fetch('data:,').catch(() => {})
  for (const name of /** @type {const} */ (['inventory', 'recommendations'])) {
    app.get(`/api/upstream/${name}`, async (req, res) => {
      const query = req.originalUrl.indexOf('?')
      const answer = await routes[name](req.breakwater, query === -1 ? '' : req.originalUrl.slice(query))
      res.status(answer.status).type(contentType(answer.status)).send(JSON.stringify(answer.body))
    })
  }
}
