// Turns one outage run's raw measurements (answers seen by the load, calls seen by the upstream, breaker samples,
// Prometheus alerts) into per-second rows, per-phase summaries and the verdict on each target of issue 22.

import { ROUTES } from './load.mjs'
import { phaseAt, phaseBounds, totalSeconds } from './timeline.mjs'

/** The request deadline of the apps (the timeout policy's default), ms. */
export const DEADLINE_MS = 10_000
/** Retry budget of the example contract: 20 % of first attempts plus 5 retries per second. */
export const BUDGET = { ratio: 0.2, perSecond: 5 }
/** Breaker open period and attempt timeout of the example contract, ms. */
export const BREAKER_OPEN_MS = 1000
export const ATTEMPT_TIMEOUT_MS = 300

const STATE_RANK = { none: -1, closed: 0, 'half-open': 1, open: 2 }

export function quantile(sorted, q) {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

/** Counts and latencies of a set of answers to one route. */
function summariseAnswers(answers) {
  const ok = answers.filter((a) => a[2] >= 200 && a[2] < 300)
  const latencies = ok.map((a) => a[3]).sort((x, y) => x - y)
  return {
    sent: answers.length,
    ok: ok.length,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: answers.length === 0 ? Number.NaN : Math.max(...answers.map((a) => a[3])),
    s5xx: answers.filter((a) => a[2] >= 500).length,
    shed: answers.filter((a) => a[4] === 3).length,
    s4xx: answers.filter((a) => a[2] >= 400 && a[2] < 500).length,
    timedOut: answers.filter((a) => a[2] === 0).length,
    errors: answers.filter((a) => a[2] === -1).length,
    late: answers.filter((a) => a[3] > DEADLINE_MS).length,
    fallback: ok.filter((a) => a[4] === 1).length,
    stale: ok.filter((a) => a[4] === 2).length,
  }
}

const upstreamCalls = (upstream, route, from, to) => {
  let sum = 0
  for (let s = from; s < to; s++) sum += upstream?.arrivals?.[route]?.[s] ?? 0
  return sum
}

/**
 * @param {any} raw what runOutage collected
 */
export function analyse(raw) {
  const total = totalSeconds(raw.phases)
  const bounds = phaseBounds(raw.phases)
  const alertIntervals = intervalsOf(raw.alertSamples ?? [])
  const variants = raw.variants.map(({ name, label }) => {
    const records = raw.records[name] ?? []
    const upstream = raw.upstream[name]
    const samples = raw.samples[name] ?? []
    /** @type {any[]} */
    const seconds = []
    const bySecond = Array.from({ length: total }, () => [])
    for (const record of records) {
      const second = Math.floor(record[1] / 1000)
      if (second >= 0 && second < total) bySecond[second].push(record)
    }
    // Opens before the timeline (warm-up) are not the outage's.
    let opensBefore = samples.filter((x) => x.t < 0).at(-1)?.opens ?? 0
    for (let s = 0; s < total; s++) {
      const routes = Object.fromEntries(
        ROUTES.map((route, index) => [route, summariseAnswers(bySecond[s].filter((a) => a[0] === index))]),
      )
      const inSecond = samples.filter((sample) => sample.t >= s && sample.t < s + 1)
      const worst = inSecond.reduce(
        (acc, sample) => ((STATE_RANK[sample.state] ?? 0) > (STATE_RANK[acc] ?? -2) ? sample.state : acc),
        undefined,
      )
      const opens = inSecond.length === 0 ? opensBefore : Math.max(...inSecond.map((x) => x.opens))
      seconds.push({
        t: s,
        phase: phaseAt(raw.phases, s),
        goodput: ROUTES.reduce((sum, route) => sum + routes[route].ok, 0),
        s5xx: ROUTES.reduce((sum, route) => sum + routes[route].s5xx, 0),
        failed: ROUTES.reduce((sum, r) => sum + routes[r].s5xx + routes[r].timedOut + routes[r].errors, 0),
        degraded: ROUTES.reduce((sum, route) => sum + routes[route].fallback + routes[route].stale, 0),
        routes,
        upstream: Object.fromEntries(ROUTES.map((route) => [route, upstream?.arrivals?.[route]?.[s] ?? 0])),
        breaker: worst,
        opened: opens - opensBefore,
        bulkheadLimit: inSecond.at(-1)?.bulkheadLimit,
        alerts:
          name === 'breakwater'
            ? alertIntervals.filter((i) => i.firing <= s + 1 && (i.resolved ?? Infinity) > s).map((i) => i.key)
            : [],
      })
      opensBefore = opens
    }
    const phases = bounds.map((bound) => {
      const inPhase = records.filter((r) => r[1] >= bound.start * 1000 && r[1] < bound.end * 1000)
      const routes = Object.fromEntries(
        ROUTES.map((route, index) => [route, summariseAnswers(inPhase.filter((a) => a[0] === index))]),
      )
      const secondsIn = seconds.slice(bound.start, bound.end)
      const phaseSamples = samples.filter((x) => x.t >= bound.start && x.t < bound.end)
      return {
        ...bound,
        routes,
        goodput: secondsIn.reduce((sum, row) => sum + row.goodput, 0) / (bound.end - bound.start),
        upstream: Object.fromEntries(
          ROUTES.map((route) => [route, upstreamCalls(upstream, route, bound.start, bound.end)]),
        ),
        opened: secondsIn.reduce((sum, row) => sum + row.opened, 0),
        openShare:
          phaseSamples.length === 0
            ? Number.NaN
            : phaseSamples.filter((x) => x.state === 'open').length / phaseSamples.length,
        bulkheadLimits: [...new Set(phaseSamples.map((x) => x.bulkheadLimit).filter((x) => x !== undefined))],
      }
    })
    return {
      name,
      label,
      seconds,
      phases,
      orders: upstream?.orders ?? { keys: 0, executed: 0, duplicateKeys: 0, duplicateExecutions: 0 },
      breakerClose: breakerClose(samples, bounds),
      amplification: amplification(records, upstream, bounds),
    }
  })
  const result = { ...raw, total, bounds, variants, alertIntervals }
  delete result.records
  result.targets = targets(result)
  return result
}

/** When the inventory breaker closed for good after the fix, and how often it opened after it. */
function breakerClose(samples, bounds) {
  const fix = bounds.find((b) => b.name === 'fixed')
  const after = samples.filter((x) => x.t >= fix.start)
  if (after.length === 0 || after[0].state === 'none') return undefined
  // The first close after the fix; opening again later (say a CPU stall on a shared machine) is reported apart.
  const firstClosed = after.find((x) => x.state === 'closed')
  const closedAt = after[0].state === 'closed' ? fix.start : firstClosed?.t
  const reopened = after.at(-1).opens - after[0].opens
  return {
    delayS: closedAt === undefined ? Number.POSITIVE_INFINITY : closedAt - fix.start,
    reopened,
    stateAtFix: after[0].state,
  }
}

/** Calls that reached the failing upstream per route, against demand × (1 + ratio) + floor × seconds. */
function amplification(records, upstream, bounds) {
  const from = bounds.find((b) => b.name === 'degrading').start
  const to = bounds.find((b) => b.name === 'fixed').start
  return Object.fromEntries(
    ['inventory', 'orders'].map((route) => {
      const demand = records.filter(
        (r) => r[0] === ROUTES.indexOf(route) && r[1] >= from * 1000 && r[1] < to * 1000,
      ).length
      const calls = upstreamCalls(upstream, route, from, to)
      const bound = demand * (1 + BUDGET.ratio) + BUDGET.perSecond * (to - from)
      return [route, { demand, calls, bound, ratio: demand === 0 ? Number.NaN : calls / demand }]
    }),
  )
}

/** Firing intervals per alert (name and policy), from the polled /api/v1/alerts samples. */
function intervalsOf(alertSamples) {
  /** @type {Map<string, { key: string, name: string, policy?: string, pending?: number, firing?: number, resolved?: number }>} */
  const open = new Map()
  const done = []
  for (const sample of alertSamples) {
    const present = new Set()
    for (const alert of sample.alerts) {
      const key = alert.policy ? `${alert.name}{${alert.policy}}` : alert.name
      present.add(key)
      let interval = open.get(key)
      if (!interval) {
        interval = { key, name: alert.name, policy: alert.policy, pending: sample.t }
        open.set(key, interval)
      }
      if (alert.state === 'firing' && interval.firing === undefined) interval.firing = sample.t
    }
    for (const [key, interval] of open) {
      if (present.has(key)) continue
      interval.resolved = sample.t
      done.push(interval)
      open.delete(key)
    }
  }
  return [...done, ...open.values()].sort((a, b) => a.pending - b.pending)
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '–')

/** Each target of issue 22: what it asks, Breakwater's figure, met or not, and the other variants' figures. */
function targets(result) {
  const sat = (v) => v.phases.find((p) => p.name === 'saturated')
  const healthy = (v) => v.phases.find((p) => p.name === 'healthy')
  const failing = (v) => v.phases.filter((p) => p.name === 'degrading' || p.name === 'saturated')
  const rows = []
  const add = (target, measure) => {
    const figures = Object.fromEntries(result.variants.map((v) => [v.name, measure(v)]))
    rows.push({ target, figures })
  }
  add('Saturated phase: zero 5xx on the read route (stale or fallback answers instead)', (v) => {
    const inv = sat(v).routes.inventory
    const bad = inv.s5xx + inv.timedOut + inv.errors
    return {
      met: bad === 0 && inv.sent > 0,
      text: `${inv.s5xx} × 5xx, ${inv.timedOut + inv.errors} unanswered of ${inv.sent}; ${inv.stale} stale, ${inv.fallback} fallback`,
    }
  })
  add(`Saturated phase: every request answered within its deadline (${DEADLINE_MS / 1000} s)`, (v) => {
    const routes = Object.values(sat(v).routes)
    const unanswered = routes.reduce((s, r) => s + r.timedOut + r.errors + r.late, 0)
    const max = Math.max(...routes.map((r) => r.max))
    return { met: unanswered === 0, text: `${unanswered} late or unanswered; slowest ${fmt(max)} ms` }
  })
  add('Healthy dependency (recommendations): p99 in degrading and saturated ≤ 1.2 × healthy-phase p99', (v) => {
    const base = healthy(v).routes.recommendations.p99
    const worst = Math.max(...failing(v).map((p) => p.routes.recommendations.p99))
    return { met: worst <= 1.2 * base, text: `${fmt(worst, 1)} ms vs ${fmt(base, 1)} ms (${fmt(worst / base, 2)}×)` }
  })
  add(
    `Calls reaching the failing upstream (degrading + saturated) ≤ demand × ${1 + BUDGET.ratio} + ${BUDGET.perSecond}/s`,
    (v) => {
      const parts = Object.entries(v.amplification)
      return {
        met: parts.every(([, a]) => a.calls <= a.bound),
        text: parts
          .map(([route, a]) => `${route} ${a.calls} ≤ ${fmt(a.bound)}? (${fmt(a.ratio, 2)}× demand)`)
          .join('; '),
      }
    },
  )
  add('No duplicate executions of the idempotent POST (counted by key at the upstream)', (v) => ({
    met: v.orders.duplicateExecutions === 0 && v.orders.keys > 0,
    text: `${v.orders.duplicateExecutions} duplicate executions over ${v.orders.duplicateKeys} of ${v.orders.keys} keys`,
  }))
  add(
    `Breaker closes within one open period (${BREAKER_OPEN_MS / 1000} s) plus one probe (≤ ${ATTEMPT_TIMEOUT_MS} ms) after the fix`,
    (v) => {
      const close = v.breakerClose
      if (!close) return { met: false, text: 'no breaker' }
      // Sampled every 250 ms: the sampling interval is added to the bound.
      const limit = (BREAKER_OPEN_MS + ATTEMPT_TIMEOUT_MS + 250) / 1000
      return {
        met: close.delayS <= limit,
        text: `closed ${fmt(close.delayS, 2)} s after the fix (state at the fix: ${close.stateAtFix}), re-opened ${close.reopened}×`,
      }
    },
  )
  if (result.prometheus) {
    const failingFrom = result.bounds.find((b) => b.name === 'degrading').start
    const fixAt = result.bounds.find((b) => b.name === 'fixed').start
    const intervals = result.alertIntervals
    const firedDuring = (name) =>
      intervals.some((i) => i.name === name && i.firing !== undefined && i.firing >= failingFrom && i.firing < fixAt)
    const breakerOpen = firedDuring('BreakwaterCircuitBreakerFlapping')
    const storm = firedDuring('BreakwaterRetryStorm')
    const unresolved = intervals.filter((i) => i.firing !== undefined && i.resolved === undefined)
    const inHealthy = intervals.filter((i) => i.firing !== undefined && i.firing < failingFrom)
    const measure = {
      met: breakerOpen && storm && unresolved.length === 0 && inHealthy.length === 0,
      text: `breaker-open (CircuitBreakerFlapping) ${breakerOpen ? 'fired' : 'did not fire'}, RetryStorm ${storm ? 'fired' : 'did not fire'} in the failing phases; ${unresolved.length} still firing at the end; ${inHealthy.length} fired in the healthy phase`,
    }
    rows.push({
      target:
        'Alerts: breaker-open and retry-storm fire during the failing phases, all resolve after recovery, none fires while healthy',
      figures: { breakwater: measure },
    })
  }
  return rows
}
