import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { promtool } from './promtool.js'

const alertsDir = fileURLToPath(new URL('../alerts/', import.meta.url))
const rulesText = readFileSync(join(alertsDir, 'prometheus-rules.yaml'), 'utf8')
/** The promtool unit-test cases, as [alert name, whether it is expected to fire]. */
const unitCases = readFileSync(join(alertsDir, 'prometheus-rules.test.yaml'), 'utf8')
  .split(/\n(?=\s+- eval_time: )/)
  .slice(1)
  .map((block) => [/alertname: (\w+)/.exec(block)?.[1] ?? '', !/exp_alerts: \[\]/.test(block)] as const)

/** Each alert's block of the rules file, by name. */
const alerts = new Map(
  rulesText
    .split(/\n(?=\s+- alert: )/)
    .slice(1)
    .map((block) => [/- alert: (\w+)/.exec(block)?.[1] ?? '', block]),
)

/** The alerts the issue asks for, each as the alert that covers it. */
const REQUIRED = {
  'breaker opening repeatedly': 'BreakwaterCircuitBreakerFlapping',
  'bulkhead saturated': 'BreakwaterBulkheadSaturated',
  'retry storm': 'BreakwaterRetryStorm',
  'retry budget exhausted': 'BreakwaterRetryBudgetExhausted',
  'shedding above a ratio': 'BreakwaterLoadSheddingHigh',
  'adaptive limit collapsed': 'BreakwaterAdaptiveLimitCollapsed',
  'rate-limit store failing open': 'BreakwaterStoreFailingOpen',
  'idempotency conflicts spiking': 'BreakwaterIdempotencyConflictsSpiking',
  'readiness failing': 'BreakwaterReadinessFailing',
}

// promtool runs real rule evaluations: seconds on a busy machine.
describe('Prometheus alert rules', { timeout: 60_000 }, () => {
  it('pass promtool check rules', async () => {
    const output = await promtool(['check', 'rules', 'prometheus-rules.yaml'], alertsDir)
    expect(output).toContain(`SUCCESS: ${alerts.size} rules found`)
  })

  it('pass their promtool unit tests', async () => {
    const output = await promtool(['test', 'rules', 'prometheus-rules.test.yaml'], alertsDir)
    expect(output).toContain('SUCCESS')
  })

  it.each(Object.entries(REQUIRED))('cover %s', (_what, alert) => {
    expect([...alerts.keys()]).toContain(alert)
  })

  it.each([...alerts.keys()])('%s has for:, a severity, a summary and a runbook line', (alert) => {
    const block = alerts.get(alert) ?? ''
    expect(block).toMatch(/\n\s+for: \d+m\n/)
    expect(block).toMatch(/\n\s+severity: (warning|critical)\n/)
    expect(block).toMatch(/\n\s+summary: ".+"\n/)
    expect(block).toMatch(/\n\s+runbook: ".+"\n/)
    expect(block).toMatch(/\n\s+runbook_url: ".+#[a-z]+"(\n|$)/)
  })

  it.each([...alerts.keys()])('%s has a unit test where it fires and one where it stays silent', (alert) => {
    const fires = unitCases.filter(([name]) => name === alert).map(([, firing]) => firing)
    expect(fires, 'a case where it fires').toContain(true)
    expect(fires, 'a case where it stays silent').toContain(false)
  })

  it('ship as a PrometheusRule with the same groups, which promtool accepts too', async () => {
    const operator = readFileSync(join(alertsDir, 'prometheus-rule.yaml'), 'utf8')
    expect(operator).toMatch(/^apiVersion: monitoring\.coreos\.com\/v1\nkind: PrometheusRule\n/m)
    const spec = operator.slice(operator.indexOf('spec:\n') + 'spec:\n'.length)
    const groups = spec.replace(/^ {2}/gm, '')
    expect(groups).toBe(rulesText.slice(rulesText.indexOf('groups:')))
    const dir = mkdtempSync(join(tmpdir(), 'breakwater-rule-'))
    try {
      writeFileSync(join(dir, 'spec.yaml'), groups)
      expect(await promtool(['check', 'rules', 'spec.yaml'], dir)).toContain(`SUCCESS: ${alerts.size} rules found`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
