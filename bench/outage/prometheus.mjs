// A real Prometheus (Debian's 2.42 package) for the outage experiment: it scrapes the Breakwater app's /metrics
// every second with a throwaway data dir and evaluates the alert rules shipped by @breakwater/otel, their `for:`
// and range windows divided by the timeline's compression factor. The rules are generated from the shipped file
// by scaleRuleDurations() — never copied by hand — so the experiment tests what users load.

import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../lib/processes.mjs'

/** The rules file @breakwater/otel ships (its package export), as a user's Prometheus would load it. */
export function shippedRulesPath() {
  return createRequire(import.meta.url).resolve('@breakwater/otel/alerts/prometheus-rules.yaml')
}

/** Shortest range window after scaling: four scrapes at 1 s, so rate() always has samples to work with. */
export const MIN_RANGE_S = 4

const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 }
const DURATION = /((?:\d+(?:ms|s|m|h|d|w|y))+)/
const seconds = (text) =>
  [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)].reduce((sum, [, n, unit]) => sum + Number(n) * UNIT_SECONDS[unit], 0)

/**
 * The shipped rules with every `for:` and every `[range]` divided by `factor` (whole seconds; ranges at least
 * MIN_RANGE_S, `for:` at least 1 s). Returns the text and what was changed, for the report.
 * @param {string} text the shipped YAML
 * @param {number} factor how many times faster the experiment's timeline runs than the one the rules assume
 */
export function scaleRuleDurations(text, factor) {
  /** @type {{ from: string, to: string, kind: 'for' | 'range' }[]} */
  const changes = []
  const scale = (from, kind) => {
    const scaled = Math.max(kind === 'range' ? MIN_RANGE_S : 1, Math.round(seconds(from) / factor))
    const to = `${scaled}s`
    changes.push({ from, to, kind })
    return to
  }
  const scaled = text
    .replace(new RegExp(`^(\\s*for:\\s*)${DURATION.source}\\s*$`, 'gm'), (_m, head, d) => `${head}${scale(d, 'for')}`)
    .replace(new RegExp(`\\[${DURATION.source}\\]`, 'g'), (_m, d) => `[${scale(d, 'range')}]`)
  return { text: scaled, changes }
}

/** The alert names of a rules file (lines `- alert: Name`). */
export const alertNames = (text) => [...text.matchAll(/^\s*- alert:\s*(\S+)/gm)].map((m) => m[1])

/** The prometheus binary: PROMETHEUS_BIN, the one .ci/run unpacks, or PATH's. Throws when there is none. */
export function prometheusBinary() {
  const candidates = [
    process.env.PROMETHEUS_BIN,
    join(
      process.env.BREAKWATER_TOOLS_DIR ?? join(homedir(), '.cache/breakwater-tools'),
      'prometheus/usr/bin/prometheus',
    ),
    ...(process.env.PATH ?? '').split(':').map((dir) => join(dir, 'prometheus')),
  ]
  const found = candidates.find((path) => path && existsSync(path))
  if (!found) {
    throw new Error(
      'prometheus is not installed: run .ci/run once (it unpacks Debian’s prometheus package into ~/.cache/breakwater-tools) or set PROMETHEUS_BIN',
    )
  }
  return found
}

/**
 * Start Prometheus scraping `target` (host:port) every second with the scaled rules; resolves once it is ready and
 * has loaded every shipped rule.
 * @param {{ target: string, factor: number, track?: (child: import('node:child_process').ChildProcess) => void }} options
 */
export async function startPrometheus({ target, factor, track }) {
  const shipped = readFileSync(shippedRulesPath(), 'utf8')
  const { text: rules, changes } = scaleRuleDurations(shipped, factor)
  const dir = mkdtempSync(join(tmpdir(), 'breakwater-outage-prometheus-'))
  writeFileSync(join(dir, 'rules.yaml'), rules)
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 900ms',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${join(dir, 'rules.yaml')}`,
      'scrape_configs:',
      '  - job_name: breakwater',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  )
  const port = await freePort()
  const child = spawn(
    prometheusBinary(),
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  track?.(child)
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const base = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await new Promise((resolve) => child.once('exit', resolve))
      clearTimeout(killer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (let attempt = 0; ; attempt++) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${stderr}`)
      const ready = await fetch(`${base}/-/ready`).then(
        (r) => r.ok,
        () => false,
      )
      if (ready) break
      if (attempt > 150) throw new Error(`prometheus was not ready within 30 s:\n${stderr}`)
      await sleep(200)
    }
    const loaded = await (await fetch(`${base}/api/v1/rules?type=alert`)).json()
    const names = loaded.data.groups.flatMap((group) => group.rules.map((rule) => rule.name))
    const expected = alertNames(shipped)
    if (expected.length === 0 || expected.some((name) => !names.includes(name))) {
      throw new Error(`prometheus loaded alerts [${names}] but the shipped file has [${expected}]`)
    }
  } catch (error) {
    await stop()
    throw error
  }
  return { base, alerts: alertNames(shipped), changes, rules, stop, version: await version(base) }
}

async function version(base) {
  try {
    return (await (await fetch(`${base}/api/v1/status/buildinfo`)).json()).data.version
  } catch {
    return 'unknown'
  }
}

/**
 * The alerts pending or firing now, from Prometheus's own API.
 * @returns {Promise<{ name: string, policy: string | undefined, state: 'pending' | 'firing', activeAt: string }[]>}
 */
export async function activeAlerts(base) {
  const body = await (await fetch(`${base}/api/v1/alerts`)).json()
  return body.data.alerts.map((alert) => ({
    name: alert.labels.alertname,
    policy: alert.labels.breakwater_policy,
    state: alert.state,
    activeAt: alert.activeAt,
  }))
}
