// Interleaved A/B throughput for the policies whose target is a small overhead (timeout and load shedding:
// ≥ 0.97 of bare). Back-to-back runs cannot resolve 3 % here: within one pass of run.mjs a bare Fastify server
// measured 80k, 91k and 96k req/s. So every server of a framework runs at once (an idle one costs nothing), and
// each round measures each of them for a short slice, in an order that rotates from round to round. A variant's
// ratio in a round is its req/s over bare's req/s in the same round, seconds apart; the result is the median of
// the rounds' ratios, with their spread. A `noop` row (a middleware or hook that does nothing) shows what the
// framework itself charges for one more middleware, the floor under any policy.
//
// Usage: node bench/overhead.mjs [--only fastify,koa] [--variants breakwater-timeout,noop] [--rounds 10]
//        [--slice 2] [--warmup 3] [--connections 32] [--no-write]        (see bench/README.md)

import { writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { cpuSeconds, killChildren, startServer, stop, stopChildrenOnInterrupt } from './lib/processes.mjs'
import { formatMarkdown, median } from './lib/report.mjs'
import { FRAMEWORKS, VARIANTS } from './variants.mjs'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const DEFAULT_VARIANTS = ['noop', 'breakwater-timeout', 'breakwater-load-shedding']

const { values: flags } = parseArgs({
  options: {
    only: { type: 'string' },
    variants: { type: 'string', default: DEFAULT_VARIANTS.join(',') },
    rounds: { type: 'string', default: '10' },
    slice: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '32' },
    'no-write': { type: 'boolean', default: false },
  },
})

function positiveInteger(name) {
  const value = Number(flags[name])
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`--${name} must be a positive integer`)
  return value
}
const rounds = positiveInteger('rounds')
const slice = positiveInteger('slice')
const warmup = positiveInteger('warmup')
const connections = positiveInteger('connections')
const frameworks = flags.only ? flags.only.split(',').map((s) => s.trim()) : FRAMEWORKS
const variantNames = flags.variants.split(',').map((s) => s.trim())
for (const framework of frameworks) {
  if (!FRAMEWORKS.includes(framework)) throw new RangeError(`--only: unknown framework "${framework}"`)
}

const log = (message) => process.stderr.write(`${message}\n`)

/** The label and target of a variant, from variants.mjs. */
function describe(framework, name) {
  const variant = VARIANTS[framework].find((v) => v.name === name)
  if (variant === undefined) throw new RangeError(`--variants: ${framework} has no variant "${name}"`)
  if (variant.store === 'redis') throw new RangeError(`--variants: ${name} needs Redis; use run.mjs for it`)
  return { label: variant.label, target: variant.target }
}

/** One slice: req/s and the server's CPU µs per request. */
async function measure(server, seconds) {
  const cpu0 = cpuSeconds(server.child.pid)
  const result = await autocannon({ url: server.url, connections, duration: seconds })
  const cpu1 = cpuSeconds(server.child.pid)
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${server.name}: ${result.non2xx} non-2xx, ${result.errors + result.timeouts} errors`)
  }
  const total = result.requests.total
  return {
    rps: result.requests.average,
    cpuMicros: cpu0 === undefined || cpu1 === undefined || total === 0 ? undefined : ((cpu1 - cpu0) * 1e6) / total,
  }
}

async function runFramework(framework) {
  const names = ['bare', ...variantNames]
  const servers = []
  try {
    for (const name of names) {
      const started = await startServer(join(BENCH_DIR, 'servers', `${framework}.mjs`), name, {
        cwd: BENCH_DIR,
        env: { NODE_ENV: 'production' },
      })
      if (started.unavailable) throw new Error(`${framework}:${name}: ${started.unavailable}`)
      servers.push({ name, child: started.child, url: `http://127.0.0.1:${started.port}/` })
    }
    for (const server of servers) await measure(server, warmup)
    const samples = new Map(names.map((name) => [name, []]))
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so no server is always measured first (or right after the same neighbour).
      const order = servers.map((_, i) => servers[(i + round) % servers.length])
      const results = new Map()
      for (const server of order) results.set(server.name, await measure(server, slice))
      const bare = results.get('bare')
      for (const [name, result] of results) {
        samples.get(name).push({
          ...result,
          ratio: result.rps / bare.rps,
          cpuRatio: result.cpuMicros === undefined ? undefined : bare.cpuMicros / result.cpuMicros,
        })
      }
      log(
        `overhead: ${framework} round ${round + 1}/${rounds}: ` +
          names
            .map(
              (name) =>
                `${name} ${Math.round(results.get(name).rps)} (${results.get(name).rps === bare.rps ? '1' : (results.get(name).rps / bare.rps).toFixed(3)})`,
            )
            .join(', '),
      )
    }
    return names.map((name) => {
      const list = samples.get(name)
      const ratios = list.map((s) => s.ratio).sort((a, b) => a - b)
      return {
        framework,
        name,
        ...(name === 'bare'
          ? { label: `${framework} (nothing mounted)`, target: undefined }
          : describe(framework, name)),
        rps: median(list.map((s) => s.rps)),
        cpuMicros: median(list.map((s) => s.cpuMicros)),
        ratio: median(ratios),
        low: ratios[0],
        high: ratios[ratios.length - 1],
        cpuRatio: median(list.map((s) => s.cpuRatio)),
      }
    })
  } finally {
    for (const server of servers) await stop(server.child)
  }
}

function render(rows, startedAt) {
  const command = `node bench/overhead.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const lines = [
    '# Policy overhead: interleaved A/B throughput',
    '',
    `- Date: ${startedAt.toISOString()}`,
    `- Command: \`${command}\``,
    `- Node ${process.version}; CPU: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length} cores (load generator and servers share them)`,
    `- Load: autocannon, ${connections} connections, GET / hello-world JSON; every server of a framework runs at once, ${warmup} s warm-up each, then ${rounds} rounds measuring each server for ${slice} s in rotating order`,
    '- ratio: the median over rounds of (req/s ÷ bare req/s of the same round); range: lowest and highest round; CPU ratio: the median of bare µs/req ÷ this µs/req',
    '- How to read it: bench/README.md, "Small overheads: interleaved A/B"',
    '',
  ]
  for (const row of rows) {
    if (row.target === undefined) continue
    const verdict = row.ratio >= row.target ? 'PASS' : 'FAIL'
    lines.push(
      `- ${verdict} — ${row.framework} ${row.name}: ratio ${row.ratio.toFixed(3)} (rounds ${row.low.toFixed(3)}–${row.high.toFixed(3)}), target ≥ ${row.target.toFixed(2)} of bare, CPU ratio ${row.cpuRatio?.toFixed(3) ?? '–'}`,
    )
  }
  lines.push(
    '',
    '| framework | variant | what | req/s (median) | server CPU µs/req | ratio vs bare | range over rounds | CPU ratio | target | result |',
  )
  lines.push('|---|---|---|--:|--:|--:|--:|--:|---|---|')
  for (const row of rows) {
    const isBare = row.name === 'bare'
    const result = row.target === undefined ? '' : row.ratio >= row.target ? '**PASS**' : '**FAIL**'
    lines.push(
      `| ${row.framework} | ${row.name} | ${row.label} | ${Math.round(row.rps).toLocaleString('en')} | ${row.cpuMicros?.toFixed(1) ?? '–'} | ` +
        `${isBare ? '1.000' : row.ratio.toFixed(3)} | ${isBare ? '' : `${row.low.toFixed(3)}–${row.high.toFixed(3)}`} | ` +
        `${isBare ? '1.000' : (row.cpuRatio?.toFixed(3) ?? '–')} | ${row.target === undefined ? '' : `≥ ${row.target.toFixed(2)}`} | ${result} |`,
    )
  }
  return `${lines.join('\n')}\n`
}

stopChildrenOnInterrupt()

try {
  const startedAt = new Date()
  const rows = []
  for (const framework of frameworks) rows.push(...(await runFramework(framework)))
  const markdown = render(rows, startedAt)
  process.stdout.write(`\n${markdown}`)
  if (!flags['no-write']) {
    const file = join(BENCH_DIR, 'OVERHEAD.md')
    writeFileSync(file, markdown)
    formatMarkdown(file)
    log('overhead: wrote bench/OVERHEAD.md')
  }
} catch (error) {
  killChildren()
  log(`overhead: ${error.stack ?? error}`)
  process.exitCode = 1
}
