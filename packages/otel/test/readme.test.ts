import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { COUNTERS, GAUGES, HISTOGRAMS } from '../src/index.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')
const rules = readFileSync(new URL('../alerts/prometheus-rules.yaml', import.meta.url), 'utf8')

describe('README', () => {
  it.each([...Object.values(COUNTERS), ...Object.values(GAUGES), ...Object.values(HISTOGRAMS)].map((m) => m.name))(
    'documents %s in the metrics table',
    (name) => {
      expect(readme).toContain(`| \`${name}\``)
    },
  )

  it.each([...rules.matchAll(/- alert: (\w+)/g)].map((match) => match[1]))('has a runbook section for %s', (alert) => {
    expect(readme).toContain(`### ${alert}\n`)
    expect(rules).toContain(`#${alert?.toLowerCase()}"`)
  })
})
