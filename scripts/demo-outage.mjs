// `pnpm demo outage`: a 23-second replay of the outage experiment (bench/outage) — the Fastify example app and an
// unprotected app against the same browning-out upstream, memory store, no Prometheus — printed as a text
// timeline of what each protection did. The full run with the peers and the alerts: node bench/outage/run.mjs.

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const PHASES = { healthy: 4, degrading: 5, saturated: 8, fixed: 6 }

console.log(
  'Breakwater outage demo: an upstream dependency (inventory) goes healthy → degrading (latency climbing to\n' +
    '500 ms) → saturated (800 ms, past the 300 ms attempt timeout, then 503s) → fixed, while open-loop load hits\n' +
    'the example app and an unprotected copy (plain fetch) alike. Recommendations, the other dependency, stays healthy.\n',
)
process.stdout.write('Building the packages… ')
const build = spawnSync(process.execPath, [process.env.npm_execpath ?? '', 'build'], { cwd: root, encoding: 'utf8' })
const built =
  build.status === 0 ||
  spawnSync('npx', ['-y', 'pnpm@10', 'build'], { cwd: root, encoding: 'utf8', stdio: 'ignore' }).status === 0
if (!built) {
  console.log('failed:\n', build.stdout, build.stderr)
  process.exit(1)
}
console.log('done. Running 23 s of timeline (+ 5 s warm-up)…\n')

const { runOutage } = await import('../bench/outage/run.mjs')
const result = await runOutage({
  phases: PHASES,
  variants: ['none', 'breakwater'],
  store: 'memory',
  prometheus: false,
  warmupS: 5,
  log: process.env.DEMO_VERBOSE ? (line) => console.error(line) : undefined,
})
const none = result.variants.find((v) => v.name === 'none')
const bw = result.variants.find((v) => v.name === 'breakwater')

const pad = (value, width) => String(value).padStart(width)
const ms = (n) => (Number.isFinite(n) ? `${Math.round(n)}` : '–')
const failed = (r) => r.s5xx + r.timedOut + r.errors
console.log('  Per second: 2xx answers / failed (5xx or no answer) on the read route (inventory, 10/s), its p99 in ms,')
console.log('  calls that reached the failing upstream, and — for Breakwater — stale answers and the breaker.\n')
console.log(
  '    s  phase      │ no protection: ok fail  p99  upstream │ Breakwater: ok fail stale  p99  upstream  breaker',
)
for (let t = 0; t < result.total; t++) {
  const a = none.seconds[t]
  const b = bw.seconds[t]
  const ai = a.routes.inventory
  const bi = b.routes.inventory
  const up = (row) => row.upstream.inventory + row.upstream.orders
  console.log(
    `  ${pad(t, 3)}  ${a.phase.padEnd(10)} │ ${pad(ai.ok, 17)} ${pad(failed(ai), 4)} ${pad(ms(ai.p99), 5)} ${pad(up(a), 8)} │ ${pad(bi.ok, 14)} ${pad(failed(bi), 4)} ${pad(bi.stale, 5)} ${pad(ms(bi.p99), 5)} ${pad(up(b), 8)}  ${b.breaker ?? '–'}${b.opened > 0 ? ` (opened ${b.opened}×)` : ''}`,
  )
}

const phase = (v, name) => v.phases.find((p) => p.name === name)
const firstOpen = bw.seconds.find((row) => row.opened > 0)
const sat = phase(bw, 'saturated')
const satNone = phase(none, 'saturated')
const recHealthy = phase(bw, 'healthy').routes.recommendations
const recSat = sat.routes.recommendations
console.log('\n  What each protection did (Breakwater):')
console.log(
  `  - Attempt timeout (300 ms): once inventory got slower than that, attempts were cut at 300 ms instead of waiting;\n` +
    `    the unprotected app waited for every answer (its read p99 in the saturated phase: ${ms(satNone.routes.inventory.p99)} ms, Breakwater's ${ms(sat.routes.inventory.p99)} ms).`,
)
console.log(
  `  - Circuit breaker: ${firstOpen ? `first opened at ${firstOpen.t} s (${firstOpen.phase})` : 'never opened'}, opened ${bw.phases.reduce((s, p) => s + p.opened, 0)}× in all; ` +
    `open ${Number.isFinite(sat.openShare) ? Math.round(sat.openShare * 100) : '–'} % of the saturated phase, when failures came back in microseconds without calling inventory.\n` +
    `    Calls reaching the failing upstream (degrading + saturated): ${bw.amplification.inventory.calls} for ${bw.amplification.inventory.demand} reads` +
    ` (unprotected: ${none.amplification.inventory.calls} for ${none.amplification.inventory.demand}).`,
)
if (bw.breakerClose) {
  console.log(
    `  - Recovery: the breaker was ${bw.breakerClose.stateAtFix} when inventory was fixed and closed ${bw.breakerClose.delayS.toFixed(2)} s later (one open period, then a probe).`,
  )
}
console.log(
  `  - Stale-if-error and fallback: ${sat.routes.inventory.stale} stale and ${sat.routes.inventory.fallback} fallback answers on the read route in the saturated phase, ` +
    `${failed(sat.routes.inventory)} failed (unprotected: ${failed(satNone.routes.inventory)} failed).`,
)
console.log(
  `  - Bulkhead: inventory's limit stayed at ${[...new Set(bw.phases.flatMap((p) => p.bulkheadLimits))].join(', ') || '–'} in flight, so the slow dependency never held more than that.`,
)
console.log(
  `  - The healthy dependency's route: p99 ${ms(recHealthy.p99)} ms while healthy, ${ms(recSat.p99)} ms during the saturated phase, ${failed(recSat)} failed.`,
)
console.log(
  `  - Idempotent POST: ${bw.orders.keys} orders reached the upstream, ${bw.orders.duplicateExecutions} executed twice (unprotected: ${none.orders.duplicateExecutions}).`,
)
console.log(
  '\n  The full experiment, with cockatiel, opossum and a real Prometheus evaluating the alerts: bench/outage/README.md',
)
process.exit(0)
