// The outage's script: four phases of the inventory dependency (healthy → degrading → saturated → fixed) and what
// the upstream does at any moment of it. Shared by the upstream process, the runner and the report.

/** Phase names in order; their lengths (seconds) are the run's parameters. */
export const PHASES = /** @type {const} */ (['healthy', 'degrading', 'saturated', 'fixed'])

/** Default phase lengths in seconds: about 2.5 minutes in all. */
export const DEFAULT_PHASES = { healthy: 30, degrading: 30, saturated: 40, fixed: 50 }

/** Inventory's service time when healthy and fixed, ms. */
export const HEALTHY_MS = 10
/** Where the degrading phase's latency ends, ms (it climbs linearly from HEALTHY_MS). */
export const DEGRADED_MS = 500
/** Service time during the first half of the saturated phase: longer than the 300 ms attempt timeout. */
export const SATURATED_MS = 800
/** Calls inventory serves at once; the rest wait in FIFO order, as a database's connection pool would make them. */
export const INVENTORY_SLOTS = 8
/** Waiting calls beyond this are answered 503 at once. */
export const INVENTORY_QUEUE = 256

/**
 * Parse `--phases`: four seconds counts in phase order (`30,30,40,50`) or `name=seconds` pairs
 * (`healthy=5,saturated=8`, the others keep their defaults).
 * @param {string | undefined} text
 * @returns {Record<typeof PHASES[number], number>}
 */
export function parsePhases(text) {
  const phases = { ...DEFAULT_PHASES }
  if (text === undefined || text === '') return phases
  const parts = text.split(',')
  parts.forEach((part, index) => {
    const [name, value] = part.includes('=') ? part.split('=') : [PHASES[index], part]
    const seconds = Number(value)
    if (!PHASES.includes(/** @type {any} */ (name)) || !Number.isFinite(seconds) || seconds <= 0) {
      throw new Error(
        `--phases: "${part}" is not <seconds> or <phase>=<seconds> with phase one of ${PHASES.join(', ')}`,
      )
    }
    phases[/** @type {typeof PHASES[number]} */ (name)] = seconds
  })
  return phases
}

/**
 * Start and end (seconds from the timeline's start) of each phase.
 * @param {Record<string, number>} phases
 */
export function phaseBounds(phases) {
  let start = 0
  return PHASES.map((name) => {
    const bound = { name, start, end: start + phases[name] }
    start = bound.end
    return bound
  })
}

/** Total length of the timeline in seconds. */
export const totalSeconds = (/** @type {Record<string, number>} */ phases) =>
  PHASES.reduce((sum, name) => sum + phases[name], 0)

/**
 * The phase at `t` seconds (before the start counts as healthy: the warm-up; after the end, fixed).
 * @param {Record<string, number>} phases
 * @param {number} t
 */
export function phaseAt(phases, t) {
  for (const bound of phaseBounds(phases)) if (t < bound.end) return t < 0 ? 'healthy' : bound.name
  return 'fixed'
}

/**
 * What inventory does with a call arriving at `t` seconds: answer after `serviceMs` of a slot, or fail with 503
 * after `serviceMs` (the second half of the saturated phase: it has fallen over and says so).
 * @param {Record<string, number>} phases
 * @param {number} t
 * @returns {{ phase: string, serviceMs: number, fails: boolean }}
 */
export function inventoryAt(phases, t) {
  const phase = phaseAt(phases, t)
  const bounds = phaseBounds(phases).find((bound) => bound.name === phase)
  const progress = bounds && t >= 0 ? (t - bounds.start) / (bounds.end - bounds.start) : 0
  if (phase === 'degrading')
    return { phase, serviceMs: HEALTHY_MS + (DEGRADED_MS - HEALTHY_MS) * progress, fails: false }
  if (phase === 'saturated') {
    return progress < 0.5 ? { phase, serviceMs: SATURATED_MS, fails: false } : { phase, serviceMs: 20, fails: true }
  }
  return { phase, serviceMs: HEALTHY_MS, fails: false }
}
