// Benchmark driver: one server process per variant, autocannon from this process, results as Markdown tables.
// Usage: node bench/run.mjs [--duration 8] [--warmup 2] [--connections 32] [--repeat 1] [--only fastify,koa:bare]
//        [--json] [--no-write] [--profile] [--strict]     (see bench/README.md)

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, arch as osArch, platform as osPlatform } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'
import {
  cpuSeconds,
  killChildren,
  machineBusySeconds,
  startRedis,
  startServer,
  stop,
  stopChildrenOnInterrupt,
  waitForQuietMachine,
} from './lib/processes.mjs'
import { formatMarkdown, renderTables, renderVerdicts, summarize } from './lib/report.mjs'
import { snapshotSourceMaps, summarizeProfiles } from './profile.mjs'
import { FRAMEWORKS, VARIANTS } from './variants.mjs'

const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
const RESULTS_DIR = join(BENCH_DIR, '.results')

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    repeat: { type: 'string' },
    retries: { type: 'string' },
    budget: { type: 'string' },
    only: { type: 'string' },
    json: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (flags.help) {
  process.stdout.write(readFileSync(join(BENCH_DIR, 'README.md'), 'utf8'))
  process.exit(0)
}

function positive(name, flag, env, fallback, integer) {
  const raw = flag ?? process.env[env] ?? String(fallback)
  const value = Number(raw)
  if (!(value > 0) || (integer && !Number.isInteger(value))) {
    throw new RangeError(`--${name} (or ${env}) must be a positive ${integer ? 'integer' : 'number'}, got "${raw}"`)
  }
  return value
}

function nonNegative(name, flag, env, fallback) {
  const raw = flag ?? process.env[env] ?? String(fallback)
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) {
    throw new RangeError(`--${name} (or ${env}) must be a non-negative integer, got "${raw}"`)
  }
  return value
}

/** Measured seconds per run unless the time budget needs fewer (never below MIN_DURATION) or --duration says. */
const DEFAULT_DURATION = 8
const MIN_DURATION = 5
/** Seconds a run costs beyond warm-up and measurement: start, quiet check, stop. */
const RUN_OVERHEAD = 1.2

/** Cores used by other processes during a run above which it counts as disturbed (and is re-run if budget allows). */
const NOISY_OTHER_CPU = 0.2

const config = {
  duration: positive('duration', flags.duration, 'BENCH_DURATION', DEFAULT_DURATION, true),
  durationGiven: flags.duration !== undefined || process.env.BENCH_DURATION !== undefined,
  budget: positive('budget', flags.budget, 'BENCH_BUDGET', 220, true),
  warmup: positive('warmup', flags.warmup, 'BENCH_WARMUP', 2, true),
  connections: positive('connections', flags.connections, 'BENCH_CONNECTIONS', 32, true),
  repeat: positive('repeat', flags.repeat, 'BENCH_REPEAT', 1, true),
  retries: nonNegative('retries', flags.retries, 'BENCH_RETRIES', 2),
  only: (flags.only ?? process.env.BENCH_ONLY ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  profile: flags.profile || process.env.BENCH_PROFILE === '1',
}
// A profiled run is slower by construction; never let it replace the published results.
const writeResults = !flags['no-write'] && !config.profile

/** `--only express,fastify:breakwater-redis,koa:*redis` selects frameworks, variants or suffixes. */
function selected(framework, variant) {
  if (config.only.length === 0) return !variant.optional
  return config.only.some((filter) => {
    const [fw, pattern] = filter.includes(':') ? filter.split(':') : [filter, undefined]
    if (fw !== framework && fw !== '*') return false
    if (pattern === undefined) return !variant.optional
    if (pattern.startsWith('*')) return variant.name.endsWith(pattern.slice(1))
    return variant.name === pattern
  })
}

/** Within a framework: bare first, then each store's rows together (Breakwater, then its peers), then the rest. */
const GROUP = { none: 0, memory: 1, redis: 2 }
const groupOf = (variant) =>
  variant.kind === 'none'
    ? 0
    : variant.store === 'none'
      ? 3
      : GROUP[variant.store] + (variant.kind === 'peer' ? 0.5 : 0)

/** Round-robin over frameworks so slow drift (thermal, noisy neighbours) spreads over all of them. */
function runOrder() {
  const lists = FRAMEWORKS.map((framework) =>
    VARIANTS[framework]
      .filter((v) => selected(framework, v))
      .sort((a, b) => groupOf(a) - groupOf(b))
      .map((variant) => ({ framework, variant })),
  )
  const order = []
  const longest = Math.max(...lists.map((l) => l.length))
  for (let i = 0; i < longest; i++) for (const list of lists) if (list[i]) order.push(list[i])
  return order
}

function packageVersion(name) {
  try {
    return JSON.parse(readFileSync(join(BENCH_DIR, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return 'missing'
  }
}

function commandLine() {
  const env = Object.entries(process.env)
    .filter(([key]) => key.startsWith('BENCH_'))
    .map(([key, value]) => `${key}=${value}`)
  const invoked = process.env.npm_lifecycle_event === 'bench' ? 'pnpm bench' : 'node bench/run.mjs'
  return [...env, invoked, ...process.argv.slice(2)].join(' ')
}

const pct = (share) => (share === undefined ? '?' : `${Math.round(share * 100)}%`)
const log = (message) => process.stderr.write(`${message}\n`)

async function measure(url, duration, load) {
  const result = await autocannon({ url, connections: config.connections, duration, ...load })
  return result
}

/** Total time runs may wait for other processes to calm down: a busy machine must not stretch the run. */
let quietBudgetMs = 10_000

/** One measured run of one variant: start, warm up, measure, stop. */
async function runOnce({ framework, variant }, redis) {
  if (variant.store === 'redis') await redis.client.flushall()
  const waitStart = performance.now()
  const others = await waitForQuietMachine([process.pid, redis?.child.pid].filter(Boolean), {
    maxMs: Math.min(3_000, quietBudgetMs),
  })
  quietBudgetMs = Math.max(500, quietBudgetMs - (performance.now() - waitStart))
  if (others >= 0.3) log(`bench:   machine busy: other processes use ${others.toFixed(1)} cores; running anyway`)
  const profileDir = join(RESULTS_DIR, 'profiles', `${framework}-${variant.name}`)
  const nodeFlags = config.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []
  // The maps of the dist this server loads, kept with its profile: a later rebuild must not skew its locations.
  if (config.profile) snapshotSourceMaps(join(profileDir, 'sourcemaps'))
  const started = await startServer(join(BENCH_DIR, 'servers', `${framework}.mjs`), variant.name, {
    cwd: BENCH_DIR,
    nodeFlags,
    env: { NODE_ENV: 'production', ...(redis ? { BENCH_REDIS_URL: redis.url } : {}) },
  })
  if (started.unavailable) return { unavailable: started.unavailable }
  const { child, port } = started
  try {
    const url = `http://127.0.0.1:${port}/`
    const warm = await measure(url, config.warmup, variant.load)
    const before = {
      server: cpuSeconds(child.pid),
      redis: cpuSeconds(redis?.child.pid),
      load: process.cpuUsage(),
      machine: machineBusySeconds(),
      at: performance.now(),
    }
    const result = await measure(url, config.duration, variant.load)
    const seconds = (performance.now() - before.at) / 1000
    const share = (start, end) => (start === undefined || end === undefined ? undefined : (end - start) / seconds)
    const load = process.cpuUsage(before.load)
    const serverCpu = share(before.server, cpuSeconds(child.pid))
    const redisCpu = share(before.redis, cpuSeconds(redis?.child.pid))
    const loadCpu = (load.user + load.system) / 1e6 / seconds
    const machineCpu = share(before.machine, machineBusySeconds())
    const otherCpu =
      machineCpu === undefined ? undefined : Math.max(0, machineCpu - (serverCpu ?? 0) - (redisCpu ?? 0) - loadCpu)
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited during the run\n${started.stderr()}`)
    }
    return {
      rps: result.requests.average,
      p99: result.latency.p99,
      total: result.requests.total,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      warmupNon2xx: warm.non2xx,
      warmupErrors: warm.errors + warm.timeouts,
      serverCpu,
      // CPU the server spent per request: robust to a load generator or a neighbour that keeps it below 100 %.
      serverMicrosPerRequest: serverCpu === undefined ? undefined : (serverCpu * seconds * 1e6) / result.requests.total,
      redisCpu: variant.store === 'redis' ? redisCpu : undefined,
      loadCpu,
      otherCpu,
      stderr: started.stderr().trim() || undefined,
    }
  } finally {
    await stop(child)
  }
}

/**
 * Run one variant once and record it in `outcomes`. With `replace`, the new run takes the place of run number
 * `replace` if other processes disturbed it less.
 */
async function execute(entry, outcomes, redis, replace) {
  const key = `${entry.framework}:${entry.variant.name}`
  const outcome = outcomes.get(key) ?? { status: 'ok', runs: [] }
  outcomes.set(key, outcome)
  if (outcome.status !== 'ok') return
  let run
  try {
    run = await runOnce(entry, redis)
  } catch (error) {
    outcome.status = 'error'
    outcome.reason = error.message.split('\n')[0]
    log(`bench: ✗ ${key}: ${error.message}`)
    return
  }
  if (run.unavailable) {
    outcome.status = 'unavailable'
    outcome.reason = run.unavailable
    log(`bench: – ${key}: unavailable (${run.unavailable})`)
    return
  }
  const bad = run.non2xx + run.errors + run.timeouts + run.warmupNon2xx + run.warmupErrors
  log(
    `bench: ${bad ? '✗' : '✓'} ${key.padEnd(38)} ${Math.round(run.rps).toString().padStart(7)} req/s` +
      `  p99 ${run.p99} ms  non-2xx ${run.non2xx + run.warmupNon2xx}  errors ${run.errors + run.timeouts + run.warmupErrors}` +
      `  cpu srv ${pct(run.serverCpu)} (${run.serverMicrosPerRequest?.toFixed(0)} µs/req) gen ${pct(run.loadCpu)} other ${pct(run.otherCpu)}`,
  )
  if (run.stderr) log(`bench:   server stderr: ${run.stderr.split('\n').slice(0, 3).join(' | ')}`)
  if (bad) {
    outcome.status = 'error'
    outcome.reason = `${run.non2xx + run.warmupNon2xx} non-2xx, ${run.errors + run.timeouts + run.warmupErrors} errors`
  }
  if (replace === undefined) outcome.runs.push(run)
  else if (bad || (run.otherCpu ?? 0) < (outcome.runs[replace].otherCpu ?? 0)) outcome.runs[replace] = run
  outcome.retried = (outcome.retried ?? 0) + (replace === undefined ? 0 : 1)
}

async function main() {
  const order = runOrder()
  if (order.length === 0) throw new Error(`--only ${config.only.join(',')} selects no variant`)
  const needsRedis = order.some(({ variant }) => variant.store === 'redis')
  // The default run must stay within the time budget however many variants the list grows to: shorten the
  // measured seconds (not below MIN_DURATION) rather than overrun. An explicit --duration is kept as given.
  const runs = order.length * config.repeat
  if (!config.durationGiven) {
    const fits = Math.floor(config.budget / runs - config.warmup - RUN_OVERHEAD)
    config.duration = Math.max(MIN_DURATION, Math.min(DEFAULT_DURATION, fits))
    if (config.duration < DEFAULT_DURATION) {
      log(
        `bench: ${runs} runs in a ${config.budget} s budget: measuring ${config.duration} s per run (--duration to override)`,
      )
    }
  }
  const perRun = config.warmup + config.duration + RUN_OVERHEAD
  log(
    `bench: ${order.length} variants × ${config.repeat} run(s), ~${((runs * perRun) / 60).toFixed(1)} min` +
      ` (${config.warmup}s warm-up + ${config.duration}s measured, ${config.connections} connections)`,
  )

  const redis = needsRedis ? await startRedis() : undefined
  if (redis) log(`bench: redis-server ${redis.version} on ${redis.url}`)
  const outcomes = new Map()
  const startedAt = new Date()
  try {
    for (let pass = 0; pass < config.repeat; pass++) {
      // Odd passes run backwards so no variant always runs first or last.
      const passOrder = pass % 2 === 0 ? order : [...order].reverse()
      for (const entry of passOrder) await execute(entry, outcomes, redis)
    }
    // A neighbour that woke up during a run distorts it: re-run the noisiest runs, within a small budget,
    // and keep whichever of the two saw less foreign CPU.
    const noisy = [...outcomes.entries()]
      .flatMap(([key, outcome]) =>
        outcome.status === 'ok' ? outcome.runs.map((run, index) => ({ key, index, other: run.otherCpu ?? 0 })) : [],
      )
      .filter(({ other }) => other > NOISY_OTHER_CPU)
      .sort((a, b) => b.other - a.other)
      .slice(0, config.retries)
    for (const { key, index } of noisy) {
      const elapsed = (Date.now() - startedAt.getTime()) / 1000
      if (elapsed + perRun > config.budget) {
        log(`bench: no time left in the ${config.budget} s budget to re-run ${key}`)
        break
      }
      log(`bench: re-running ${key}: other processes were busy during it`)
      await execute(
        order.find((entry) => `${entry.framework}:${entry.variant.name}` === key),
        outcomes,
        redis,
        index,
      )
    }
  } finally {
    if (redis) {
      redis.client.disconnect()
      await stop(redis.child)
    }
  }

  const frameworks = FRAMEWORKS.filter((fw) => order.some((entry) => entry.framework === fw))
  const tables = summarize(outcomes, frameworks)
  const cpu = cpus()
  const meta = {
    date: startedAt.toISOString(),
    node: process.version,
    platform: `${osPlatform()} ${osArch()}`,
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    command: commandLine(),
    duration: config.duration,
    warmup: config.warmup,
    connections: config.connections,
    repeat: config.repeat,
    retried: [...outcomes.entries()].filter(([, o]) => o.retried).map(([key]) => key),
    redis: redis?.version,
    profiled: config.profile,
    versions: Object.fromEntries(
      [
        'autocannon',
        'express',
        'fastify',
        'koa',
        'ioredis',
        'express-rate-limit',
        'rate-limit-redis',
        'rate-limiter-flexible',
        '@fastify/rate-limit',
        'koa-ratelimit',
      ].map((name) => [name, packageVersion(name)]),
    ),
  }
  const markdown = render(meta, tables)
  process.stdout.write(`\n${markdown}`)
  if (writeResults) {
    writeFileSync(join(BENCH_DIR, 'RESULTS.md'), markdown)
    formatMarkdown(join(BENCH_DIR, 'RESULTS.md'))
    log('bench: wrote bench/RESULTS.md')
  }
  if (flags.json) {
    mkdirSync(RESULTS_DIR, { recursive: true })
    const file = join(RESULTS_DIR, `bench-${meta.date.replace(/[:.]/g, '-')}.json`)
    const runs = Object.fromEntries(outcomes)
    writeFileSync(file, `${JSON.stringify({ meta, tables, runs }, null, 2)}\n`)
    log(`bench: wrote ${file}`)
  }
  if (config.profile) {
    process.stdout.write(`\n${summarizeProfiles(join(RESULTS_DIR, 'profiles'), order)}\n`)
  }

  const rows = Object.values(tables).flat()
  const errors = rows.filter((row) => row.status === 'error')
  const misses = rows.filter((row) => row.verdict === 'FAIL' || row.verdict === 'N/A')
  if (errors.length > 0) {
    log(`bench: ${errors.length} row(s) failed: ${errors.map((r) => `${r.framework}:${r.variant.name}`).join(', ')}`)
    process.exitCode = 1
  } else if (flags.strict && misses.length > 0) {
    log(`bench: --strict: ${misses.length} Breakwater row(s) missed or lack their target`)
    process.exitCode = 1
  }
}

function render(meta, tables) {
  const versions = Object.entries(meta.versions)
    .map(([name, version]) => `${name} ${version}`)
    .join(', ')
  const verdicts = renderVerdicts(tables)
  return [
    '# Benchmark results',
    '',
    meta.profiled ? '> **Profiled run** (`--cpu-prof` on every server): throughput is not comparable.\n' : '',
    `- Date: ${meta.date}`,
    `- Node ${meta.node} on ${meta.platform}; CPU: ${meta.cpu} × ${meta.cores} cores (load generator, servers and Redis share them)`,
    `- Command: \`${meta.command}\``,
    `- Load: autocannon, ${meta.connections} connections, ${meta.duration} s measured after ${meta.warmup} s warm-up, GET / hello-world JSON, one server process per variant; ${meta.repeat === 1 ? 'one run per variant' : `median of ${meta.repeat} runs per variant; each ratio is the median of the ${meta.repeat} per-pass ratios (a run ÷ bare's run of the same pass)`}`,
    meta.redis
      ? `- Redis ${meta.redis} started by the benchmark (\`--save "" --appendonly no\`), FLUSHALL before each Redis variant; every library gets one ioredis client with \`{ enableAutoPipelining: true }\``
      : '',
    meta.retried.length > 0
      ? `- Re-run because other processes were busy during the first run (the quieter run is kept): ${meta.retried.join(', ')}`
      : '',
    `- Versions: ${versions}`,
    '',
    'Limit 1e9 per 60 s (never rejects), one key (the client IP) for every library. Targets: Fastify memory ≥ 0.95 of bare,',
    'Fastify Redis ≥ 0.80 of bare; Express and Koa ≥ the best peer ratio measured in this run on the same store.',
    '"ref." is the ratio published for that peer in REFERENCE.md. How to read this: bench/README.md.',
    'Timeout and load-shedding rows (target ≥ 0.97 of bare): back-to-back runs here move by more than their 3 %;',
    'bench/OVERHEAD.md measures them by interleaving short runs of each server, next to an empty middleware.',
    '',
    verdicts ? `${verdicts}\n` : '',
    renderTables(tables),
  ]
    .filter((line, i, all) => line !== '' || all[i - 1] !== '')
    .join('\n')
}

stopChildrenOnInterrupt()

try {
  await main()
} catch (error) {
  killChildren()
  log(`bench: ${error.stack ?? error}`)
  process.exitCode = 1
}
