// The overload experiment: each protection variant of server.mjs, in its own process, driven open-loop at 1×, 2×
// and 5× the downstream's capacity for a fixed time. Writes RESULTS.md and overload.svg next to this file.
// Usage: node bench/overload/run.mjs [--duration 6] [--warmup 2] [--loads 1,2,5] [--no-write]

import { writeFileSync } from 'node:fs'
import http from 'node:http'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { killChildren, startServer, stop } from '../lib/processes.mjs'
import { formatMarkdown } from '../lib/report.mjs'
import { renderChart } from './chart.mjs'

const HERE = dirname(fileURLToPath(import.meta.url))
const SLOTS = Number(process.env.OVERLOAD_SLOTS ?? 4)
const SERVICE_MS = Number(process.env.OVERLOAD_SERVICE_MS ?? 50)
const CAPACITY = (SLOTS * 1000) / SERVICE_MS
/** A client gives up after this long; a later answer is not goodput. */
const CLIENT_TIMEOUT_MS = 2_000

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
    loads: { type: 'string', default: '1,2,5' },
    'no-write': { type: 'boolean', default: false },
  },
})
const DURATION_S = Number(flags.duration)
const WARMUP_S = Number(flags.warmup)
const LOADS = flags.loads.split(',').map(Number)
const VARIANTS = [
  ['none', 'no protection'],
  ['under-pressure', '@fastify/under-pressure (README thresholds)'],
  ['breakwater-static', `Breakwater static limit (${2 * SLOTS}, hand-picked)`],
  ['breakwater-adaptive', 'Breakwater adaptive (defaults: Gradient2)'],
]

const log = (message) => process.stderr.write(`${message}\n`)

/**
 * Send `rate` requests/s for warm-up + duration seconds, open-loop (on schedule, whatever the server does), and
 * measure latency from each request's scheduled time so a stalled server cannot hide its queue.
 */
async function drive(port, rate, warmupS, durationS) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
  const total = Math.round(rate * (warmupS + durationS))
  const measureFrom = warmupS * 1000
  const stats = { sent: 0, ok: [], shed: 0, timeouts: 0, errors: 0, other: 0 }
  const start = performance.now()
  let scheduled = 0
  let settled = 0
  await new Promise((resolve) => {
    const send = (at) => {
      const measured = at >= measureFrom
      if (measured) stats.sent++
      let finished = false
      let timedOut = false
      const finish = () => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        if (++settled === total) resolve()
      }
      const request = http.get({ host: '127.0.0.1', port, path: '/work', agent })
      const timer = setTimeout(
        () => {
          timedOut = true
          if (measured) stats.timeouts++
          request.destroy()
          finish()
        },
        Math.max(0, CLIENT_TIMEOUT_MS - (performance.now() - start - at)),
      )
      request.on('response', (response) => {
        response.resume()
        response.on('end', () => {
          if (timedOut) return
          const latency = performance.now() - start - at
          if (measured) {
            if (response.statusCode === 200) stats.ok.push(latency)
            else if (response.statusCode === 503) stats.shed++
            else stats.other++
          }
          finish()
        })
      })
      request.on('error', () => {
        if (measured && !timedOut && !finished) stats.errors++
        finish()
      })
      request.on('close', finish)
    }
    const tick = setInterval(() => {
      const now = performance.now() - start
      // Request k is due at k / rate seconds: the first leaves at once.
      const due = Math.min(total, Math.floor((now / 1000) * rate) + 1)
      while (scheduled < due) send((scheduled++ * 1000) / rate)
      if (scheduled >= total) clearInterval(tick)
    }, 2)
  })
  agent.destroy()
  stats.ok.sort((a, b) => a - b)
  const pick = (q) =>
    stats.ok.length === 0 ? Number.NaN : stats.ok[Math.min(stats.ok.length - 1, Math.floor(q * stats.ok.length))]
  return {
    rate,
    sent: stats.sent,
    goodput: stats.ok.length / durationS,
    p50: pick(0.5),
    p99: pick(0.99),
    rejected: stats.sent === 0 ? 0 : stats.shed / stats.sent,
    timedOut: stats.sent === 0 ? 0 : (stats.timeouts + stats.errors) / stats.sent,
  }
}

async function withServer(variant, fn) {
  const started = await startServer(join(HERE, 'server.mjs'), variant, {
    cwd: join(HERE, '..'),
    env: { NODE_ENV: 'production', OVERLOAD_SLOTS: String(SLOTS), OVERLOAD_SERVICE_MS: String(SERVICE_MS) },
  })
  if (started.unavailable) return { unavailable: started.unavailable }
  try {
    return await fn(started.port)
  } finally {
    await stop(started.child)
  }
}

async function main() {
  const cells = VARIANTS.length * LOADS.length * (WARMUP_S + DURATION_S)
  log(`overload: capacity ${CAPACITY} req/s (${SLOTS} slots × ${SERVICE_MS} ms); ~${Math.ceil((cells + 8) / 60)} min`)
  // The reference: the unprotected server at a quarter of its capacity.
  const unloaded = await withServer('none', (port) => drive(port, CAPACITY / 4, 1, 4))
  log(`overload: unloaded p50 ${unloaded.p50.toFixed(1)} ms, p99 ${unloaded.p99.toFixed(1)} ms`)
  const rows = []
  for (const [variant, label] of VARIANTS) {
    for (const load of LOADS) {
      const result = await withServer(variant, (port) => drive(port, CAPACITY * load, WARMUP_S, DURATION_S))
      if (result.unavailable) {
        log(`overload: ${variant}: ${result.unavailable}`)
        break
      }
      rows.push({ variant, label, load, ...result })
      log(
        `overload: ${variant} ${load}×: goodput ${result.goodput.toFixed(0)}/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, shed ${(result.rejected * 100).toFixed(0)} %`,
      )
    }
  }
  const markdown = report(unloaded, rows)
  process.stdout.write(markdown)
  if (!flags['no-write']) {
    writeFileSync(join(HERE, 'RESULTS.md'), markdown)
    formatMarkdown(join(HERE, 'RESULTS.md'))
    writeFileSync(
      join(HERE, 'overload.svg'),
      renderChart(rows, { capacity: CAPACITY, unloadedP99: unloaded.p99, loads: LOADS }),
    )
    log('overload: wrote bench/overload/RESULTS.md and bench/overload/overload.svg')
  }
}

const fmt = (ms) => (Number.isNaN(ms) ? '–' : ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))
const pct = (share) => `${(share * 100).toFixed(share > 0 && share < 0.01 ? 1 : 0)} %`

function report(unloaded, rows) {
  const lines = [
    '# Overload experiment',
    '',
    `A Fastify server whose one route calls a simulated downstream with a fixed capacity: ${SLOTS} calls at a time,`,
    `${SERVICE_MS} ms each, the rest queued FIFO — **capacity ${CAPACITY} req/s**. It keeps working on calls whose`,
    `clients gave up, as a real dependency does. Open-loop load (requests sent on schedule, whatever the server does)`,
    `at 1×, 2× and 5× capacity; each cell is a fresh server process, ${WARMUP_S} s of warm-up at the same rate, then`,
    `${DURATION_S} s measured. Latency counts from each request's scheduled send time; clients give up after`,
    `${CLIENT_TIMEOUT_MS / 1000} s. Generated by \`node bench/overload/run.mjs\` (see README.md).`,
    '',
    `- Unloaded (¼ of capacity, no protection): p50 ${fmt(unloaded.p50)} ms, **p99 ${fmt(unloaded.p99)} ms**.`,
    `- Target at 5×: Breakwater adaptive goodput ≥ ${(0.9 * CAPACITY).toFixed(0)} req/s (0.9 of capacity) and p99 of`,
    `  accepted requests ≤ ${fmt(3 * unloaded.p99)} ms (3× unloaded p99), with default options.`,
    `- Machine: ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, shared with`,
    '  other work during the run (one run; expect a few % of noise on goodput and more on p99).',
    '',
    '| variant | load | offered req/s | goodput req/s | goodput / capacity | p50 ms | p99 ms | p99 / unloaded p99 | shed (503) | timed out |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  for (const row of rows) {
    lines.push(
      `| ${row.label} | ${row.load}× | ${row.rate.toFixed(0)} | ${row.goodput.toFixed(0)} | ${(row.goodput / CAPACITY).toFixed(2)} | ${fmt(row.p50)} | ${fmt(row.p99)} | ${Number.isNaN(row.p99) ? '–' : (row.p99 / unloaded.p99).toFixed(1)} | ${pct(row.rejected)} | ${pct(row.timedOut)} |`,
    )
  }
  const missing = VARIANTS.filter(([variant]) => !rows.some((row) => row.variant === variant))
  if (missing.length > 0) {
    lines.push('', `Not measured in this run: ${missing.map(([, label]) => label).join(', ')} (package not installed).`)
  }
  const adaptive = rows.find((row) => row.variant === 'breakwater-adaptive' && row.load === 5)
  if (adaptive) {
    const goodputOk = adaptive.goodput >= 0.9 * CAPACITY
    const p99Ok = adaptive.p99 <= 3 * unloaded.p99
    lines.push(
      '',
      `**Target at 5×: ${goodputOk && p99Ok ? 'PASS' : 'FAIL'}** — goodput ${(adaptive.goodput / CAPACITY).toFixed(2)} of capacity (${goodputOk ? '≥' : '<'} 0.9), p99 ${(adaptive.p99 / unloaded.p99).toFixed(1)}× unloaded (${p99Ok ? '≤' : '>'} 3).`,
    )
  }
  lines.push('', '![goodput and p99 against offered load](overload.svg)', '')
  return `${lines.join('\n')}\n`
}

process.on('SIGINT', () => {
  killChildren()
  process.exit(130)
})
main().catch((error) => {
  killChildren()
  console.error(error)
  process.exit(1)
})
