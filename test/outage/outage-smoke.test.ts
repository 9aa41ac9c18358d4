// Keeps the outage experiment (bench/outage) from rotting: runs it end to end on a tiny timeline — the real
// upstream, the unprotected app and the Fastify example app over loopback, memory store, no Prometheus — and
// checks that its pipeline yields per-second rows and that Breakwater's protections show in them.

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'breakwater-outage-smoke-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** healthy 3 s, degrading 3 s, saturated 6 s, fixed 4 s. */
const PHASES = '3,3,6,4'

interface Route {
  sent: number
  ok: number
  s5xx: number
  timedOut: number
  errors: number
  stale: number
  fallback: number
}
type Routes<T> = { inventory: T; recommendations: T; orders: T }
interface Second {
  t: number
  phase: string
  goodput: number
  routes: Routes<Route>
  upstream: Routes<number>
  breaker?: string
}
interface Variant {
  name: string
  seconds: Second[]
  phases: { name: string; routes: Routes<Route> }[]
}
interface Result {
  total: number
  variants: Variant[]
}

function runExperiment(): Promise<Result> {
  const out = join(dir, 'result.json')
  const child = spawn(
    process.execPath,
    [
      'bench/outage/run.mjs',
      ...['--phases', PHASES, '--variants', 'none,breakwater', '--store', 'memory', '--warmup', '3'],
      ...['--no-prometheus', '--no-write', '--json', out],
    ],
    { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000)
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code !== 0) reject(new Error(`bench/outage/run.mjs exited with ${code}:\n${stderr}`))
      else resolve(JSON.parse(readFileSync(out, 'utf8')) as Result)
    })
  })
}

describe('outage experiment (tiny timeline)', () => {
  it('produces a row per second per variant, and Breakwater’s breaker and fallback act on the saturated phase', async () => {
    const result = await runExperiment()
    expect(result.total).toBe(16)
    expect(result.variants.map((v) => v.name)).toEqual(['none', 'breakwater'])
    for (const variant of result.variants) {
      expect(variant.seconds.map((row) => row.t)).toEqual([...Array(16).keys()])
      expect(variant.seconds.map((row) => row.phase)).toEqual([
        ...Array(3).fill('healthy'),
        ...Array(3).fill('degrading'),
        ...Array(6).fill('saturated'),
        ...Array(4).fill('fixed'),
      ])
      // Open loop: every second got its requests on every route, whatever the app did.
      for (const row of variant.seconds) {
        expect(row.routes.inventory.sent, `${variant.name} t=${row.t}`).toBeGreaterThan(0)
        expect(row.routes.recommendations.sent, `${variant.name} t=${row.t}`).toBeGreaterThan(0)
      }
      const healthy = variant.phases.find((p) => p.name === 'healthy')
      expect(healthy?.routes.recommendations.ok).toBeGreaterThan(0)
    }
    const none = result.variants.find((v) => v.name === 'none') as Variant
    const breakwater = result.variants.find((v) => v.name === 'breakwater') as Variant
    const saturated = (v: Variant) => v.seconds.filter((row) => row.phase === 'saturated')
    // The unprotected app passes every read on to the failing upstream; Breakwater's open breaker stops them.
    const upstreamReads = (v: Variant) => saturated(v).reduce((sum, row) => sum + row.upstream.inventory, 0)
    expect(upstreamReads(none)).toBeGreaterThan(0)
    expect(upstreamReads(breakwater)).toBeLessThan(upstreamReads(none))
    expect(saturated(breakwater).some((row) => row.breaker === 'open')).toBe(true)
    // The healthy dependency's route answers without a 5xx throughout (its fallback covers any hiccup).
    const recommendations = breakwater.seconds.reduce(
      (sum, row) => sum + row.routes.recommendations.s5xx + row.routes.recommendations.timedOut,
      0,
    )
    expect(recommendations).toBe(0)
  }, 180_000)
})
