// Turns measured runs into rows (medians, ratios, targets) and renders them as Markdown.

import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { targetOf, VARIANTS } from '../variants.mjs'

export function median(values) {
  const sorted = values.filter((v) => v !== undefined && !Number.isNaN(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return undefined
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/**
 * @param {Map<string, { status: string, reason?: string, runs: object[] }>} outcomes keyed `${framework}:${variant}`
 * @returns {Record<string, object[]>} rows per framework, in the order of VARIANTS
 */
export function summarize(outcomes, frameworks) {
  const tables = {}
  for (const framework of frameworks) {
    const rows = []
    for (const variant of VARIANTS[framework]) {
      const outcome = outcomes.get(`${framework}:${variant.name}`)
      if (!outcome) continue
      const runs = outcome.runs
      rows.push({
        framework,
        variant,
        status: outcome.status,
        reason: outcome.reason,
        runs: runs.length,
        measured: runs,
        rps: median(runs.map((r) => r.rps)),
        p99: median(runs.map((r) => r.p99)),
        non2xx: runs.reduce((sum, r) => sum + r.non2xx + r.warmupNon2xx, 0),
        errors: runs.reduce((sum, r) => sum + r.errors + r.timeouts + r.warmupErrors, 0),
        serverCpu: median(runs.map((r) => r.serverCpu)),
        serverMicros: median(runs.map((r) => r.serverMicrosPerRequest)),
        redisCpu: median(runs.map((r) => r.redisCpu)),
        loadCpu: median(runs.map((r) => r.loadCpu)),
        otherCpu: median(runs.map((r) => r.otherCpu)),
      })
    }
    const bare = rows.find((row) => row.variant.kind === 'none' && row.status === 'ok')
    const ratios = new Map()
    const cpuRatios = new Map()
    // A row with a `baseline` (the many-keys rows) is divided by that bare row, measured under the same load.
    const baseOf = (row) =>
      row.variant.baseline === undefined
        ? bare
        : rows.find((r) => r.variant.name === row.variant.baseline && r.status === 'ok')
    for (const row of rows) {
      const base = baseOf(row)
      const ok = base !== undefined && row.status === 'ok'
      row.ratio = ok ? pairedRatio(row, base, (run, b) => run.rps / b.rps) : undefined
      // What the req/s ratio would be if the server were the only bottleneck: bare's CPU per request ÷ this one's.
      row.cpuRatio = ok
        ? pairedRatio(row, base, (run, b) => b.serverMicrosPerRequest / run.serverMicrosPerRequest)
        : undefined
      if (row.ratio !== undefined) ratios.set(row.variant.name, row.ratio)
      if (row.cpuRatio !== undefined) cpuRatios.set(row.variant.name, row.cpuRatio)
    }
    for (const row of rows) {
      row.target = targetOf(framework, row.variant, ratios)
      if (!row.target) continue
      row.verdict = verdict(row, row.ratio, row.target)
      row.cpuVerdict = verdict(row, row.cpuRatio, targetOf(framework, row.variant, cpuRatios))
      // A row is noisy when other processes took a fifth of a core during it or during the rows it is judged by.
      const judgedBy = rows.filter((r) => r === row || r === baseOf(row) || r.variant.label === row.target.peer)
      row.noisy = judgedBy.some((r) => (r.otherCpu ?? 0) > NOISY_OTHER_CPU)
    }
    tables[framework] = rows
  }
  return tables
}

/**
 * A row's ratio to bare: the median, over passes, of this row's run divided by bare's run of the same pass. The
 * machine drifts between fast and slow phases lasting minutes; pairing runs of one pass cancels most of that,
 * and one run re-measured in another phase (a re-run) moves one ratio of the median, not the reference of the
 * whole table. Without one run per pass on both sides, the ratio of the medians.
 */
function pairedRatio(row, bare, ratioOf) {
  const runs = row.measured
  const bareRuns = bare.measured
  if (runs.length === bareRuns.length && runs.length > 0) {
    const paired = median(runs.map((run, pass) => ratioOf(run, bareRuns[pass])))
    if (paired !== undefined && Number.isFinite(paired)) return paired
  }
  const run = { rps: row.rps, serverMicrosPerRequest: row.serverMicros }
  const base = { rps: bare.rps, serverMicrosPerRequest: bare.serverMicros }
  const ratio = ratioOf(run, base)
  return Number.isFinite(ratio) && ratio > 0 ? ratio : undefined
}

/** Cores used by processes other than ours above which a row is flagged as noisy. */
const NOISY_OTHER_CPU = 0.2

function verdict(row, ratio, target) {
  if (row.status !== 'ok') return row.status === 'unavailable' ? 'N/A' : 'FAIL'
  if (ratio === undefined || target === undefined || Number.isNaN(target.min)) return 'N/A'
  return ratio >= target.min ? 'PASS' : 'FAIL'
}

const TITLES = { express: 'Express', fastify: 'Fastify', koa: 'Koa' }

const fixed = (value, digits) => (value === undefined ? '–' : value.toFixed(digits))
const percent = (value) => (value === undefined ? '–' : String(Math.round(value * 100)))

function verdictCell(row) {
  let cell = `**${row.verdict}**`
  if (row.cpuVerdict !== row.verdict && row.cpuVerdict !== 'N/A') cell += ` (by CPU: ${row.cpuVerdict})`
  if (row.noisy) cell += ' ⚠ noisy'
  return cell
}

function renderRow(row) {
  const { variant } = row
  const name = variant.kind === 'breakwater' ? `**${variant.name}**` : variant.name
  const redis = row.variant.store === 'redis' ? percent(row.redisCpu) : '–'
  const cpu = `${percent(row.serverCpu)} / ${redis} / ${percent(row.loadCpu)} / ${percent(row.otherCpu)}`
  let rps = row.rps === undefined ? '–' : Math.round(row.rps).toLocaleString('en-US')
  if (row.status === 'unavailable') rps = `not built: ${row.reason}`
  if (row.status === 'error') rps = `**ERROR**: ${row.reason}`
  const cells = [
    name,
    variant.label,
    variant.store === 'none' ? '–' : variant.store,
    rps,
    row.variant.kind === 'none' ? (row.status === 'ok' ? '1.00' : '–') : fixed(row.ratio, 2),
    row.variant.kind === 'none' ? (row.status === 'ok' ? '1.00' : '–') : fixed(row.cpuRatio, 2),
    fixed(row.p99, 1),
    fixed(row.serverMicros, 0),
    `${row.non2xx} / ${row.errors}`,
    cpu,
    row.target ? row.target.text : variant.reference !== undefined ? `ref. ${variant.reference.toFixed(2)}` : '',
    row.verdict ? verdictCell(row) : '',
  ]
  return `| ${cells.join(' | ')} |`
}

export function renderTables(tables) {
  const parts = []
  for (const [framework, rows] of Object.entries(tables)) {
    if (rows.length === 0) continue
    parts.push(
      `### ${TITLES[framework]}`,
      '',
      '| variant | library | store | req/s | ratio vs bare | CPU ratio | p99 ms | server CPU µs/req | non-2xx / errors | CPU % server / redis / load / other | target (ref.) | result |',
      '|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|',
      ...rows.map(renderRow),
      '',
    )
  }
  return parts.join('\n')
}

export function renderVerdicts(tables) {
  const lines = []
  for (const rows of Object.values(tables)) {
    for (const row of rows) {
      if (!row.verdict) continue
      const ratio = row.ratio === undefined ? 'n/a' : row.ratio.toFixed(2)
      const cpu = row.cpuRatio === undefined ? '' : `, CPU ratio ${row.cpuRatio.toFixed(2)} (${row.cpuVerdict})`
      const noisy = row.noisy ? ' — noisy: other processes were busy, re-run before trusting it' : ''
      lines.push(
        `- ${row.verdict} — ${TITLES[row.framework]} ${row.variant.name}: ratio ${ratio}, target ${row.target.text}${cpu}${noisy}`,
      )
    }
  }
  return lines.join('\n')
}

/** Pad a written Markdown file's tables the way the repository's formatter does, so it passes `pnpm lint`. */
export function formatMarkdown(file) {
  const biome = fileURLToPath(new URL('../../node_modules/.bin/biome', import.meta.url))
  try {
    execFileSync(biome, ['format', '--write', file], { stdio: 'ignore' })
  } catch {
    console.error(`bench: could not format ${file} with biome; run pnpm format`)
  }
}
