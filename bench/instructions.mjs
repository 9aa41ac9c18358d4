// Instructions per request, counted by valgrind (callgrind): a repeatable view of what a variant adds to one
// request, where wall-clock throughput on a small shared machine moves by ±10% from run to run.
// Usage: node bench/instructions.mjs [--only fastify:bare,fastify:breakwater-memory] [--requests 10000] [--no-write]
// Prints a Markdown table and (unless --no-write) writes it to bench/INSTRUCTIONS.md with the command.
//
// Each variant's server runs twice under callgrind, at the same time (one per core): once answering N requests,
// once 2N. The difference of the two totals divided by N is the steady-state cost of one request, start-up and
// warm-up cancelled out. One connection, so requests are never batched and the counts barely depend on timing;
// node runs with --single-threaded (compilation on the main thread, so counted and deterministic),
// --predictable-gc-schedule and fixed hash and random seeds. Redis variants run only when --only names them (one
// redis-server is started for them; Redis's own work is not in the server's count, and with one connection every
// request is its own round trip: the count is the server's side of one decision, without batching).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import { startRedis, startServer, stop } from './lib/processes.mjs'
import { formatMarkdown } from './lib/report.mjs'
import { FRAMEWORKS, VARIANTS } from './variants.mjs'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const { values: flags } = parseArgs({
  options: {
    only: { type: 'string' },
    requests: { type: 'string', default: '10000' },
    'no-write': { type: 'boolean', default: false },
  },
})
const requests = Number(flags.requests)
if (!Number.isInteger(requests) || requests < 1000) throw new RangeError('--requests must be an integer ≥ 1000')

/** `framework:variant` pairs to measure: --only's, else every in-process variant of every framework. */
function selected() {
  const wanted = flags.only?.split(',').map((s) => s.trim())
  const list = []
  for (const framework of FRAMEWORKS) {
    for (const variant of VARIANTS[framework]) {
      const key = `${framework}:${variant.name}`
      if (variant.store === 'redis' && !wanted?.includes(key)) continue
      // Optional variants only when named; the default list stays the in-process variants of the main run.
      const named = wanted?.includes(key) || (!variant.optional && wanted?.includes(framework))
      if (wanted === undefined ? !variant.optional : named) list.push([framework, variant])
    }
  }
  return list
}

/** Total instructions of a server under callgrind that answered `count` requests on one connection. */
async function countInstructions(framework, variant, count, load, redisUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'bw-callgrind-'))
  const out = join(dir, 'callgrind.out')
  const started = await startServer(join(BENCH_DIR, 'servers', `${framework}.mjs`), variant, {
    cwd: BENCH_DIR,
    env: { NODE_ENV: 'production', ...(redisUrl ? { BENCH_REDIS_URL: redisUrl } : {}) },
    launcher: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`],
    // Fixed hash and random seeds: V8 seeds its hash tables at random per process, which moved the same server's
    // count by up to ~2k instructions (Express ±15k) between runs; with one seed, runs repeat within ~50.
    nodeFlags: ['--single-threaded', '--predictable-gc-schedule', '--hash-seed=1', '--random-seed=1'],
    // node starts some 50× slower under callgrind, and a server loading the OpenTelemetry SDK loads many modules;
    // on a machine shared with other work, BENCH_READY_TIMEOUT_MS gives it longer
    readyTimeoutMs: Number(process.env.BENCH_READY_TIMEOUT_MS ?? 300_000),
  })
  if (started.unavailable) throw new Error(`${framework}:${variant}: ${started.unavailable}`)
  const { child, port } = started
  try {
    // The variant's own load options (an Idempotency-Key header, say), as run.mjs sends them.
    // A generous per-request timeout: under callgrind on a busy machine a request can take seconds.
    const result = await autocannon({
      url: `http://127.0.0.1:${port}/`,
      connections: 1,
      amount: count,
      timeout: 120,
      ...load,
    })
    if (result.non2xx > 0 || result.errors > 0) throw new Error(`${framework}:${variant}: non-2xx or errors`)
    // No SIGKILL deadline as in stop(): callgrind writes its counts only on a normal exit, which takes a while.
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await exited
    const summary = /^summary: (\d+)$/m.exec(readFileSync(out, 'utf8'))
    if (!summary) throw new Error(`${framework}:${variant}: no callgrind summary`)
    return Number(summary[1])
  } finally {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

const rows = []
const chosen = selected()
const redis = chosen.some(([, variant]) => variant.store === 'redis') ? await startRedis() : undefined
// A failed count must not leave the Redis it started running.
process.once('exit', () => redis?.child.kill('SIGKILL'))
for (const [framework, variant] of chosen) {
  if (variant.store === 'redis') await redis.client.flushall()
  const url = variant.store === 'redis' ? redis.url : undefined
  const [small, large] = await Promise.all([
    countInstructions(framework, variant.name, requests, variant.load, url),
    countInstructions(framework, variant.name, 2 * requests, variant.load, url),
  ])
  const perRequest = (large - small) / requests
  rows.push({
    framework,
    variant: variant.name,
    label: variant.label,
    perRequest,
    baseline: variant.baseline ?? 'bare',
  })
  process.stderr.write(`instructions: ${framework}:${variant.name} ${Math.round(perRequest)} per request\n`)
}

const lines = [
  `Instructions per request (callgrind, one connection, ${requests} vs ${2 * requests} requests), node ${process.version}`,
  '',
  '| framework | variant | library | instructions / request | added to bare | ratio to bare |',
  '|---|---|---|--:|--:|--:|',
]
for (const row of rows) {
  // The many-keys rows divide by `bare-many`: bare under the same load.
  const bare = rows.find((r) => r.framework === row.framework && r.variant === row.baseline)
  const added = bare ? row.perRequest - bare.perRequest : Number.NaN
  const ratio = bare ? bare.perRequest / row.perRequest : Number.NaN
  lines.push(
    `| ${row.framework} | ${row.variant} | ${row.label} | ${Math.round(row.perRequest).toLocaleString('en')} | ` +
      `${bare ? Math.round(added).toLocaleString('en') : '–'} | ${bare ? ratio.toFixed(3) : '–'} |`,
  )
}
process.stdout.write(`${lines.join('\n')}\n`)
if (redis) {
  redis.client.disconnect()
  await stop(redis.child)
}

if (!flags['no-write']) {
  const command = `node bench/instructions.mjs ${process.argv.slice(2).join(' ')}`.trim()
  const header = [
    '# Instructions per request',
    '',
    `- Date: ${new Date().toISOString()}`,
    `- Command: \`${command}\``,
    `- CPU: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}; valgrind callgrind, node --single-threaded --predictable-gc-schedule --hash-seed=1 --random-seed=1`,
    '- How to read it: bench/README.md, "Counting instructions instead of seconds".',
    '',
  ]
  const file = join(BENCH_DIR, 'INSTRUCTIONS.md')
  writeFileSync(file, `${[...header, ...lines].join('\n')}\n`)
  formatMarkdown(file)
}
