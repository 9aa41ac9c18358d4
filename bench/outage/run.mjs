// The outage experiment: one dependency of an app browns out (healthy → degrading → saturated → fixed) while
// open-loop load hits three routes, and every variant — no protection, the peers, Breakwater's example app —
// lives through the same timeline at the same time against its own share of one loopback upstream. A real
// Prometheus scrapes the Breakwater app and evaluates @breakwater/otel's shipped alerts, scaled in time.
// Usage: node bench/outage/run.mjs [--framework fastify] [--phases 30,30,40,50] [--variants none,cockatiel,…]
//        [--store redis|memory] [--no-prometheus] [--alert-scale 30] [--warmup 5] [--no-write]
//        [--json result.json] [--raw raw.json] [--from result.json] [--out dir]
// Writes bench/outage/RESULTS.md and outage.svg (see README.md).

import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort, startRedis, startServer } from '../lib/processes.mjs'
import { formatMarkdown } from '../lib/report.mjs'
import { analyse } from './analyse.mjs'
import { renderChart } from './chart.mjs'
import { ROUTES } from './load.mjs'
import { activeAlerts, startPrometheus } from './prometheus.mjs'
import { renderReport } from './report.mjs'
import { parsePhases, phaseBounds, totalSeconds } from './timeline.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../..')

/** Every variant the experiment knows, in report order. */
export const VARIANTS = {
  none: 'no protection (plain fetch, 10 s timeout)',
  cockatiel: 'peers: cockatiel 3.2 + @fastify/under-pressure',
  opossum: 'peers: opossum 9 + p-retry 7 + @fastify/under-pressure',
  breakwater: 'Breakwater (example app)',
}

/** Requests per second per route and variant: the read, the healthy dependency's route, the idempotent POST. */
export const DEFAULT_RATES = { inventory: 10, recommendations: 5, orders: 2 }

/**
 * @typedef {{ framework?: string, phases?: Record<string, number>, variants?: string[], store?: 'redis' | 'memory',
 *   prometheus?: boolean, alertScale?: number, rates?: Record<string, number>, warmupS?: number,
 *   sampleMs?: number, rawPath?: string, log?: (line: string) => void }} OutageOptions
 */

/**
 * Run the experiment once and return its measurements (see analyse.mjs for the shape).
 * @param {OutageOptions} options
 */
export async function runOutage(options = {}) {
  const framework = options.framework ?? 'fastify'
  const phases = options.phases ?? parsePhases(undefined)
  const variants = options.variants ?? Object.keys(VARIANTS)
  const store = options.store ?? 'redis'
  const rates = options.rates ?? DEFAULT_RATES
  const warmupS = options.warmupS ?? 5
  const sampleMs = options.sampleMs ?? 250
  const alertScale = options.alertScale ?? 30
  const log = options.log ?? (() => {})
  for (const variant of variants) if (!(variant in VARIANTS)) throw new Error(`unknown variant ${variant}`)
  if (!['express', 'fastify', 'koa'].includes(framework)) throw new Error(`unknown framework ${framework}`)

  /** @type {Set<import('node:child_process').ChildProcess>} */
  const children = new Set()
  const track = (child) => {
    children.add(child)
    child.once('exit', () => children.delete(child))
    return child
  }
  const cleanups = []
  const interrupt = () => {
    for (const child of children) child.kill('SIGKILL')
    process.exit(130)
  }
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
  const work = mkdtempSync(join(tmpdir(), 'breakwater-outage-'))
  try {
    /** @type {{ url: string, version: string } | undefined} */
    let redis
    if (store === 'redis' && variants.includes('breakwater')) {
      const started = await startRedis()
      track(started.child)
      started.client.disconnect()
      redis = started
      cleanups.push(() => stopChild(started.child))
      log(`outage: redis ${started.version} on ${started.url}`)
    }
    const upstream = await startServer(join(HERE, 'upstream.mjs'), 'upstream', { cwd: ROOT, env: {} })
    if (upstream.unavailable) throw new Error(upstream.unavailable)
    track(upstream.child)
    cleanups.push(() => stopChild(upstream.child))
    const upstreamBase = `http://127.0.0.1:${upstream.port}`

    /** @type {{ variant: string, port: number, child: import('node:child_process').ChildProcess }[]} */
    const apps = await Promise.all(
      variants.map(async (variant) => {
        const env = { UPSTREAM_URL: `${upstreamBase}/${variant}`, NODE_ENV: 'production' }
        if (variant !== 'breakwater') {
          const started = await startServer(join(HERE, 'apps/peers.mjs'), variant, { cwd: ROOT, env })
          if (started.unavailable) throw new Error(`${variant}: ${started.unavailable}`)
          track(started.child)
          return { variant, port: started.port, child: started.child }
        }
        const port = await freePort()
        const child = track(
          spawn(process.execPath, ['src/server.js'], {
            cwd: join(ROOT, 'examples', framework),
            env: {
              ...process.env,
              ...env,
              PORT: String(port),
              OTEL: 'prometheus',
              ...(redis ? { REDIS_URL: redis.url } : { REDIS_URL: '' }),
              SHUTDOWN_DRAIN_MS: '0',
              SHUTDOWN_TIMEOUT_MS: '2000',
            },
            stdio: ['ignore', 'ignore', 'pipe'],
          }),
        )
        let stderr = ''
        child.stderr.setEncoding('utf8')
        child.stderr.on('data', (chunk) => {
          stderr = (stderr + chunk).slice(-4000)
        })
        await waitUntilAnswers(`http://127.0.0.1:${port}/`, child, () => stderr)
        return { variant, port, child }
      }),
    )
    for (const app of apps) cleanups.push(() => stopChild(app.child))
    log(`outage: ${apps.map((a) => `${a.variant} on :${a.port}`).join(', ')}; upstream on :${upstream.port}`)

    const breakwaterApp = apps.find((app) => app.variant === 'breakwater')
    let prometheus
    if (options.prometheus !== false && breakwaterApp) {
      prometheus = await startPrometheus({ target: `127.0.0.1:${breakwaterApp.port}`, factor: alertScale, track })
      cleanups.push(() => prometheus.stop())
      log(
        `outage: prometheus ${prometheus.version} evaluating ${prometheus.alerts.length} shipped alerts ÷ ${alertScale}`,
      )
    }

    // Everyone starts the timeline at t0; the load's warm-up runs in the healthy state before it.
    const total = totalSeconds(phases)
    const t0 = Date.now() + 1000 + warmupS * 1000
    await fetch(`${upstreamBase}/_start?t0=${t0}&phases=${encodeURIComponent(JSON.stringify(phases))}`, {
      method: 'POST',
    })
    const configPath = join(work, 'load.json')
    const outPath = join(work, 'records.json')
    const clientTimeoutMs = 11_000
    writeFileSync(
      configPath,
      JSON.stringify({
        t0,
        warmupS,
        durationS: total,
        clientTimeoutMs,
        rates,
        targets: apps.map(({ variant, port }) => ({ variant, port })),
      }),
    )
    const loader = track(spawn(process.execPath, [join(HERE, 'load.mjs'), configPath, outPath], { stdio: 'inherit' }))
    const loadDone = new Promise((resolve, reject) =>
      loader.once('exit', (code) => (code === 0 ? resolve(undefined) : reject(new Error(`load exited ${code}`)))),
    )
    log(
      `outage: ${total} s timeline (${phaseBounds(phases)
        .map((b) => `${b.name} ${b.end - b.start} s`)
        .join(', ')}) + ${warmupS} s warm-up; load ${ROUTES.map((r) => `${r} ${rates[r]}/s`).join(', ')} per variant`,
    )

    // Sample every app's breaker and bulkhead, and Prometheus's alerts, until the load is done.
    /** @type {Record<string, { t: number, state: string, opens: number, bulkheadLimit: number | undefined }[]>} */
    const samples = Object.fromEntries(apps.map((app) => [app.variant, []]))
    /** @type {{ t: number, alerts: Awaited<ReturnType<typeof activeAlerts>> }[]} */
    const alertSamples = []
    let loading = true
    void loadDone.finally(() => {
      loading = false
    })
    let lastAlertPoll = 0
    let lastProgress = 0
    while (loading) {
      const t = (Date.now() - t0) / 1000
      await Promise.all(
        apps.map(async (app) => {
          const state = await sampleState(app).catch(() => undefined)
          if (state) samples[app.variant].push({ t, ...state })
        }),
      )
      if (prometheus && Date.now() - lastAlertPoll >= 1000) {
        lastAlertPoll = Date.now()
        const alerts = await activeAlerts(prometheus.base).catch(() => undefined)
        if (alerts && t >= 0) alertSamples.push({ t, alerts })
      }
      if (t - lastProgress >= 10) {
        lastProgress = Math.floor(t)
        log(`outage: t = ${lastProgress} s`)
      }
      await sleep(sampleMs)
    }
    await loadDone
    // Alerts resolve some seconds after the end: watch them settle for one scaled `for:` more.
    const settleUntil = Date.now() + (prometheus ? 12_000 : 0)
    while (prometheus && Date.now() < settleUntil) {
      const alerts = await activeAlerts(prometheus.base).catch(() => undefined)
      if (alerts) alertSamples.push({ t: (Date.now() - t0) / 1000, alerts })
      await sleep(1000)
    }
    const records = JSON.parse(readFileSync(outPath, 'utf8'))
    const upstreamStats = await (await fetch(`${upstreamBase}/_stats`)).json()
    const raw = {
      framework,
      phases,
      variants: variants.map((v) => ({ name: v, label: VARIANTS[v] })),
      store: redis ? `redis ${redis.version}` : 'memory',
      rates,
      warmupS,
      clientTimeoutMs,
      alertScale,
      prometheus: prometheus
        ? { version: prometheus.version, alerts: prometheus.alerts, changes: prometheus.changes }
        : undefined,
      records,
      upstream: upstreamStats,
      samples,
      alertSamples,
      machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`,
    }
    if (options.rawPath) writeFileSync(options.rawPath, JSON.stringify(raw))
    return analyse(raw)
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {})
    process.off('SIGINT', interrupt)
    process.off('SIGTERM', interrupt)
    rmSync(work, { recursive: true, force: true })
  }
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await new Promise((resolve) => child.once('exit', resolve))
  clearTimeout(killer)
}

async function waitUntilAnswers(url, child, stderr) {
  for (let attempt = 0; attempt < 150; attempt++) {
    if (child.exitCode !== null) throw new Error(`${url}: the app exited (${child.exitCode}):\n${stderr()}`)
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) return
    await sleep(200)
  }
  throw new Error(`${url} did not answer within 30 s:\n${stderr()}`)
}

const STATE_RANK = { closed: 0, 'half-open': 1, open: 2 }

/**
 * The inventory breaker's state, how often it opened, and the bulkhead limit: from the Breakwater app's
 * /metrics (what @breakwater/otel reports), from the comparison apps' /debug/outage.
 */
async function sampleState(app) {
  if (app.variant !== 'breakwater') {
    const response = await fetch(`http://127.0.0.1:${app.port}/debug/outage`)
    // @fastify/under-pressure answers 503 for every route when it sheds, this one too: no sample then.
    if (!response.ok) return undefined
    const state = await response.json()
    return { state: state.state, opens: state.opens, bulkheadLimit: state.bulkheadLimit }
  }
  const text = await (await fetch(`http://127.0.0.1:${app.port}/metrics`)).text()
  let state = 'closed'
  let opens = 0
  let bulkheadLimit
  for (const line of text.split('\n')) {
    if (!line.includes('breakwater_policy="inventory"')) continue
    const value = Number(line.slice(line.lastIndexOf(' ') + 1))
    const named = /breakwater_circuit_breaker_state="([^"]+)"/.exec(line)?.[1]
    if (line.startsWith('breakwater_circuit_breaker_state{') && value === 1 && named) state = named
    else if (line.startsWith('breakwater_circuit_breaker_transitions_total{') && named === 'open') opens += value
    else if (line.startsWith('breakwater_bulkhead_limit{')) bulkheadLimit = value
  }
  if (!(state in STATE_RANK)) state = 'open' // isolated counts as open
  return { state, opens, bulkheadLimit }
}

async function main() {
  const { values: flags } = parseArgs({
    options: {
      framework: { type: 'string', default: 'fastify' },
      phases: { type: 'string' },
      variants: { type: 'string', default: Object.keys(VARIANTS).join(',') },
      store: { type: 'string', default: 'redis' },
      'no-prometheus': { type: 'boolean', default: false },
      'alert-scale': { type: 'string', default: '30' },
      'no-write': { type: 'boolean', default: false },
      raw: { type: 'string' },
      json: { type: 'string' },
      from: { type: 'string' },
      out: { type: 'string', default: HERE },
      warmup: { type: 'string', default: '5' },
    },
  })
  if (flags.store !== 'redis' && flags.store !== 'memory') throw new Error('--store is redis or memory')
  // --from: re-render the report of an earlier run's --json instead of running again.
  const result = flags.from
    ? JSON.parse(readFileSync(flags.from, 'utf8'))
    : await runOutage({
        framework: flags.framework,
        phases: parsePhases(flags.phases),
        variants: flags.variants.split(','),
        store: flags.store,
        prometheus: !flags['no-prometheus'],
        alertScale: Number(flags['alert-scale']),
        rawPath: flags.raw,
        warmupS: Number(flags.warmup),
        log: (line) => process.stderr.write(`${line}\n`),
      })
  if (flags.json) writeFileSync(flags.json, JSON.stringify(result))
  const markdown = renderReport(result)
  process.stdout.write(markdown)
  if (!flags['no-write']) {
    writeFileSync(join(flags.out, 'RESULTS.md'), markdown)
    formatMarkdown(join(flags.out, 'RESULTS.md'))
    writeFileSync(join(flags.out, 'outage.svg'), renderChart(result))
    process.stderr.write(`outage: wrote RESULTS.md and outage.svg in ${flags.out}\n`)
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
