// Per-call cost of @breakwater/undici on a real loopback call: an undici Agent composed with breakwater() against
// the bare Agent and against the Agent composed with undici's own retry interceptor, through undici's fetch and
// through undici's request, every call succeeding (the steady state the protection must not tax).
// Usage: node bench/undici.mjs [--calls 200] [--only fetch:bare,request:breakwater,…] [--no-callgrind] [--no-write]
// Prints a Markdown table and (unless --no-write) writes it to bench/UNDICI.md.
//
// Instructions are counted as in instructions.mjs and outbound.mjs: each (api, dispatcher) runs twice under
// callgrind, N and 2N measured calls after the same warm-up, and (total(2N) − total(N)) / N is one call; "added"
// subtracts the bare Agent. The upstream runs in this (parent) process, outside callgrind, so only the caller's
// work is counted. Wall-clock µs per call come from a separate run without callgrind: noisy on a shared machine.

import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const APIS = ['fetch', 'request']
const DISPATCHERS = ['bare', 'breakwater', 'undici-retry']
const WARM_UP = 200

/** The Agent each row calls through, as a user would write it. */
async function dispatcherFor(kind, origin) {
  const { Agent, interceptors } = await import('undici')
  // One connection, so every call reuses the same keep-alive socket and none is opened mid-measurement.
  const agent = new Agent({ connections: 1, keepAliveTimeout: 120_000 })
  if (kind === 'bare') return agent
  if (kind === 'undici-retry') return agent.compose(interceptors.retry())
  const { dependency } = await import('@breakwater/core')
  const { breakwater } = await import('@breakwater/undici')
  const upstream = dependency('bench-upstream', {
    breaker: { consecutiveFailures: 5, openMs: 5000 },
    bulkhead: { limit: 100 },
    attemptTimeoutMs: 10_000,
    retry: {},
  })
  return agent.compose(breakwater({ dependencies: { [origin]: upstream } }))
}

async function worker(api, kind, count, origin) {
  const undici = await import('undici')
  const dispatcher = await dispatcherFor(kind, origin)
  const url = `${origin}/`
  const call =
    api === 'fetch'
      ? async () => {
          const res = await undici.fetch(url, { dispatcher })
          if ((await res.text()) !== 'ok') throw new Error('unexpected body')
        }
      : async () => {
          const res = await undici.request(url, { dispatcher })
          if ((await res.body.text()) !== 'ok') throw new Error('unexpected body')
        }
  for (let i = 0; i < WARM_UP; i++) await call()
  const started = process.hrtime.bigint()
  for (let i = 0; i < count; i++) await call()
  const ns = Number(process.hrtime.bigint() - started) / count
  process.send?.({ ns }, () => process.exit(0))
}

/** Run one worker, under callgrind or not; resolves to its total instructions (or NaN) and ns per call. */
function run(api, kind, count, origin, callgrind) {
  const dir = mkdtempSync(join(tmpdir(), 'bw-undici-'))
  const out = join(dir, 'callgrind.out')
  const nodeFlags = ['--single-threaded', '--predictable-gc-schedule', '--hash-seed=1', '--random-seed=1']
  const child = fork(SELF, ['--worker', api, kind, String(count), origin], {
    cwd: BENCH_DIR,
    execPath: callgrind ? 'valgrind' : process.execPath,
    execArgv: callgrind
      ? ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, ...nodeFlags]
      : nodeFlags,
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  })
  let ns = Number.NaN
  child.on('message', (message) => {
    ns = message.ns
  })
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`${api}:${kind} exited with ${code}`)
        const summary = callgrind ? /^summary: (\d+)$/m.exec(readFileSync(out, 'utf8')) : null
        resolve({ instructions: summary ? Number(summary[1]) : Number.NaN, ns })
      } catch (error) {
        reject(error)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  })
}

async function main() {
  const { values: flags } = parseArgs({
    options: {
      calls: { type: 'string', default: '200' },
      only: { type: 'string' },
      'no-callgrind': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
    },
  })
  const calls = Number(flags.calls)
  if (!Number.isInteger(calls) || calls < 100) throw new RangeError('--calls must be an integer ≥ 100')
  const callgrind = !flags['no-callgrind']
  const upstream = http.createServer((_req, res) => res.end('ok'))
  // Callgrind slows the client down by ~50×: keep the idle keep-alive socket open between its calls.
  upstream.keepAliveTimeout = 120_000
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${upstream.address().port}`
  const rows = []
  try {
    for (const api of APIS) {
      for (const kind of DISPATCHERS) {
        if (flags.only !== undefined && !flags.only.split(',').includes(`${api}:${kind}`)) continue
        const [small, large] = await Promise.all([
          run(api, kind, calls, origin, callgrind),
          run(api, kind, 2 * calls, origin, callgrind),
        ])
        const timed = await run(api, kind, 1_000, origin, false)
        const perCall = (large.instructions - small.instructions) / calls
        rows.push({ api, kind, perCall, ns: timed.ns })
        process.stderr.write(`undici: ${api}:${kind} ${Math.round(perCall)} instructions, ${timed.ns.toFixed(0)} ns\n`)
      }
    }
  } finally {
    upstream.close()
  }
  const version = (name) =>
    JSON.parse(readFileSync(join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
  const lines = [
    `Per successful loopback call (callgrind, ${calls} vs ${2 * calls} calls after ${WARM_UP} warm-up), node ${process.version}, undici ${version('undici')}`,
    '',
    '| api | dispatcher | instructions / call | added to bare Agent | µs / call (wall, noisy) |',
    '|---|---|--:|--:|--:|',
  ]
  for (const row of rows) {
    const bare = rows.find((r) => r.api === row.api && r.kind === 'bare')
    const added = row.perCall - (bare?.perCall ?? Number.NaN)
    lines.push(
      `| ${row.api} | ${row.kind} | ${fmt(row.perCall)} | ${row.kind === 'bare' ? '–' : fmt(added)} | ${(row.ns / 1000).toFixed(1)} |`,
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  if (!flags['no-write']) {
    const header = [
      '# @breakwater/undici: cost per call',
      '',
      `- Date: ${new Date().toISOString()}`,
      `- Command: \`node bench/undici.mjs ${process.argv.slice(2).join(' ')}\``.replace(' `', '`'),
      `- CPU: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
      '- Rows: `bare` = `new Agent()`; `breakwater` = `.compose(breakwater(...))` with a dependency of breaker +',
      '  bulkhead + attempt timeout + retry (defaults: 3 attempts, full jitter, budget); `undici-retry` = `.compose(interceptors.retry())` (its defaults).',
      '- The figure is instructions (deterministic); wall-clock µs on this shared 2-core machine are noise.',
      '',
    ]
    const file = join(BENCH_DIR, 'UNDICI.md')
    writeFileSync(file, `${[...header, ...lines].join('\n')}\n`)
    execFileSync(
      process.execPath,
      [join(BENCH_DIR, '..', 'node_modules', '@biomejs', 'biome', 'bin', 'biome'), 'format', '--write', file],
      { stdio: 'ignore' },
    )
  }
}

const fmt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en') : 'n/a')

if (process.argv[2] === '--worker') {
  const [, , , api, kind, count, origin] = process.argv
  await worker(api, kind, Number(count), origin)
} else await main()
