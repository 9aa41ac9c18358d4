// Per-call overhead of outbound protection: circuit breaker + bulkhead + attempt timeout around (a) an
// already-resolved function and (b) a real loopback HTTP call, for Breakwater's dependency(), cockatiel 3.2's
// wrap() of the same three policies, and opossum 9 (its breaker carries a timeout and a capacity semaphore).
// Usage: node bench/outbound.mjs [--calls 2000] [--only resolved:breakwater,http:bare,…] [--no-callgrind] [--no-write]
// Prints a Markdown table and (unless --no-write) writes it to bench/OUTBOUND.md.
//
// Instructions are counted as in instructions.mjs: each (scenario, library) runs twice under callgrind, N and 2N
// measured calls after the same warm-up, and (total(2N) − total(N)) / N is one call; "added" subtracts the bare
// call. The loopback upstream runs in its own process, outside callgrind, so only the caller's work is counted.
// Wall-clock ns per call (same process, no callgrind) are printed beside them: noisy here, instructions are not.

import { execFileSync, fork } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const LIBRARIES = [
  'bare',
  'breakwater',
  'cockatiel',
  'opossum',
  'breakwater-retry',
  'cockatiel-retry',
  'p-retry-opossum',
]
/**
 * `resolved`: an already-resolved function that does not look at its signal; `resolved-signal`: the same, but it
 * reads its signal (as any real call passing it on does); `http`: a real loopback HTTP call given the signal.
 */
const SCENARIOS = ['resolved', 'resolved-signal', 'http']
const WARM_UP = 1000

/**
 * One library's guarded call, as the caller writes it; `work` receives an AbortSignal where the library has one
 * (opossum has no signal per call). With `readsSignal` false, Breakwater's work never reads `ctx.signal`, so no
 * AbortController is made for it (cockatiel makes one per call either way).
 */
async function guard(library, work, readsSignal) {
  if (library === 'bare') return (signal) => work(signal)
  if (library === 'breakwater' || library === 'breakwater-retry') {
    const { dependency } = await import('@breakwater/core')
    // `-retry`: the full dependency() of issue 20 — retry (3 attempts, full jitter, budget) above the three.
    const bench = dependency('bench', {
      breaker: { consecutiveFailures: 5, openMs: 5000 },
      bulkhead: { limit: 100 },
      attemptTimeoutMs: 10_000,
      ...(library === 'breakwater-retry' ? { retry: { attempts: 3 } } : {}),
    })
    return readsSignal ? () => bench.execute((ctx) => work(ctx.signal)) : () => bench.execute(() => work())
  }
  if (library === 'cockatiel' || library === 'cockatiel-retry') {
    const {
      bulkhead,
      circuitBreaker,
      ConsecutiveBreaker,
      ExponentialBackoff,
      handleAll,
      retry,
      timeout,
      TimeoutStrategy,
      wrap,
    } = await import('cockatiel')
    const layers =
      library === 'cockatiel-retry' ? [retry(handleAll, { maxAttempts: 2, backoff: new ExponentialBackoff() })] : []
    const policy = wrap(
      ...layers,
      circuitBreaker(handleAll, { halfOpenAfter: 5000, breaker: new ConsecutiveBreaker(5) }),
      bulkhead(100),
      timeout(10_000, TimeoutStrategy.Aggressive),
    )
    return () => policy.execute(({ signal }) => work(signal))
  }
  if (library === 'p-retry-opossum') {
    const { default: pRetry } = await import('p-retry')
    const { default: CircuitBreaker } = await import('opossum')
    const breaker = new CircuitBreaker((signal) => work(signal), {
      timeout: 10_000,
      capacity: 100,
      resetTimeout: 5000,
      volumeThreshold: 5,
    })
    return () => pRetry(() => breaker.fire(undefined), { retries: 2 })
  }
  const { default: CircuitBreaker } = await import('opossum')
  const breaker = new CircuitBreaker((signal) => work(signal), {
    timeout: 10_000,
    capacity: 100,
    resetTimeout: 5000,
    volumeThreshold: 5,
  })
  return () => breaker.fire(undefined)
}

function workFor(scenario, url) {
  if (scenario !== 'http') return () => Promise.resolve(1)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  // node:http rather than fetch: far fewer instructions per call, so the policies' share is visible.
  return (signal) =>
    new Promise((resolve, reject) => {
      const request = http.get(url, { agent, signal }, (response) => {
        response.resume()
        response.on('end', () => resolve(response.statusCode))
      })
      request.on('error', reject)
    })
}

async function worker(scenario, library, count, url) {
  const call = await guard(library, workFor(scenario, url), scenario !== 'resolved')
  for (let i = 0; i < WARM_UP; i++) await call()
  const started = process.hrtime.bigint()
  for (let i = 0; i < count; i++) await call()
  const ns = Number(process.hrtime.bigint() - started) / count
  process.send?.({ ns }, () => process.exit(0))
}

/** Run one worker, under callgrind or not; resolves to its total instructions (or NaN) and ns per call. */
function run(scenario, library, count, url, callgrind) {
  const dir = mkdtempSync(join(tmpdir(), 'bw-outbound-'))
  const out = join(dir, 'callgrind.out')
  const nodeFlags = ['--single-threaded', '--predictable-gc-schedule', '--hash-seed=1', '--random-seed=1']
  const child = fork(SELF, ['--worker', scenario, library, String(count), url], {
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
        if (code !== 0) throw new Error(`${scenario}:${library} exited with ${code}`)
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
      calls: { type: 'string', default: '2000' },
      only: { type: 'string' },
      'no-callgrind': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
    },
  })
  const calls = Number(flags.calls)
  const callgrind = !flags['no-callgrind']
  const upstream = http.createServer((_req, res) => res.end('ok'))
  // Callgrind slows the client down by ~50×: keep idle keep-alive sockets open so none is reused as it closes.
  upstream.keepAliveTimeout = 120_000
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${upstream.address().port}/`
  const rows = []
  try {
    for (const scenario of SCENARIOS) {
      for (const library of LIBRARIES) {
        if (flags.only !== undefined && !flags.only.split(',').includes(`${scenario}:${library}`)) continue
        const [small, large] = await Promise.all([
          run(scenario, library, calls, url, callgrind),
          run(scenario, library, 2 * calls, url, callgrind),
        ])
        // Wall clock from a separate run without callgrind, with more calls.
        const timed = await run(scenario, library, scenario === 'http' ? 5_000 : 100_000, url, false)
        const perCall = (large.instructions - small.instructions) / calls
        rows.push({ scenario, library, perCall, ns: timed.ns })
        process.stderr.write(
          `outbound: ${scenario}:${library} ${Math.round(perCall)} instructions, ${timed.ns.toFixed(0)} ns\n`,
        )
      }
    }
  } finally {
    upstream.close()
  }
  const version = (name) =>
    JSON.parse(readFileSync(join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
  const lines = [
    `Per call, breaker + bulkhead + attempt timeout (callgrind, ${calls} vs ${2 * calls} calls after ${WARM_UP} warm-up), node ${process.version}, cockatiel ${version('cockatiel')}, opossum ${version('opossum')}`,
    '',
    '| scenario | library | instructions / call | added to bare | added vs Breakwater | ns / call (wall, noisy) |',
    '|---|---|--:|--:|--:|--:|',
  ]
  for (const row of rows) {
    const bare = rows.find((r) => r.scenario === row.scenario && r.library === 'bare')
    const ours = rows.find((r) => r.scenario === row.scenario && r.library === 'breakwater')
    const added = row.perCall - (bare?.perCall ?? Number.NaN)
    const oursAdded = (ours?.perCall ?? Number.NaN) - (bare?.perCall ?? Number.NaN)
    const vs = row.library === 'bare' ? '–' : `${(added / oursAdded).toFixed(2)}×`
    lines.push(
      `| ${row.scenario} | ${row.library} | ${fmt(row.perCall)} | ${row.library === 'bare' ? '–' : fmt(added)} | ${vs} | ${fmt(row.ns)} |`,
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  if (!flags['no-write']) {
    const header = [
      '# Outbound overhead per call',
      '',
      `- Date: ${new Date().toISOString()}`,
      `- Command: \`node bench/outbound.mjs ${process.argv.slice(2).join(' ')}\``.replace(' `', '`'),
      `- CPU: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}`,
      '- "added vs Breakwater": the library\'s added instructions per call divided by Breakwater\'s (2.00× = twice as many).',
      '',
    ]
    const file = join(BENCH_DIR, 'OUTBOUND.md')
    writeFileSync(file, `${[...header, ...lines].join('\n')}\n`)
    execFileSync(
      process.execPath,
      [join(BENCH_DIR, '..', 'node_modules', '@biomejs', 'biome', 'bin', 'biome'), 'format', '--write', file],
      {
        stdio: 'ignore',
      },
    )
  }
}

const fmt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en') : 'n/a')

if (process.argv[2] === '--worker') {
  const [, , , scenario, library, count, url] = process.argv
  await worker(scenario, library, Number(count), url)
} else await main()
