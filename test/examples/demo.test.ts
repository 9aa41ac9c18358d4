// The demo (`scripts/demo.mjs`) run as a user runs it, once per framework, against the built packages: its story
// comes first, and the health section shows what it promises, in order — passing probes, a failing readiness
// check with liveness holding, details only behind the token, recovery, then the drain on SIGTERM.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { FRAMEWORKS, useExamples } from './example-process.js'

const root = fileURLToPath(new URL('../../', import.meta.url))

useExamples()

/** Run the demo for one framework (the build is the test command's, so --no-build) and collect its output. */
function runDemo(framework: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const { REDIS_URL: _, ...env } = process.env
    const child = spawn(process.execPath, ['scripts/demo.mjs', framework, '--no-build'], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`the ${framework} demo did not finish in 90 s:\n${output}`))
    }, 90_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

/** The lines matching each pattern, each found after the previous one; fails naming the first one missing. */
function expectInOrder(output: string, patterns: RegExp[]): void {
  let from = 0
  for (const pattern of patterns) {
    const match = new RegExp(pattern.source, pattern.flags.replace('g', '')).exec(output.slice(from))
    expect(match, `${pattern} after offset ${from} in:\n${output}`).not.toBeNull()
    from += (match?.index ?? 0) + (match?.[0].length ?? 0)
  }
}

describe.each(FRAMEWORKS)('the %s demo', (framework) => {
  it('tells its story first, then shows health: probes, a failing check, details behind the token, the drain', async () => {
    const { code, output } = await runDemo(framework)
    expect(code, output).toBe(0)
    expect(output.startsWith('Breakwater demo: ')).toBe(true)

    const health = output.slice(output.indexOf('  Health — '))
    expectInOrder(health, [
      // Passing probes: public answers carry the status only.
      /GET \/livez +→ 200 \{"status":"pass"\} /,
      /GET \/readyz +→ 200 \{"status":"pass"\} /,
      /GET \/startupz +→ 200 \{"status":"pass"\} /,
      // With the token: one line per check, the dependency's among them.
      /GET \/readyz with Authorization: Bearer demo-token → 200 "pass", per check:/,
      /^ +lifecycle:state +pass /m,
      /^ +dependency:responseTime +pass /m,
      // The dependency fails: readiness 503, liveness still 200, and the token shows which check and why.
      /now answers 503/,
      /GET \/readyz +→ 503 \{"status":"fail"\} /,
      /GET \/livez +→ 200 \{"status":"pass"\} /,
      /→ 503 "fail" \(not passing: dependency:responseTime\), per check:/,
      /^ +dependency:responseTime +fail .*http:\/\/127\.0\.0\.1:\d+\/health answered 503$/m,
      /GET \/readyz +→ 200 \{"status":"pass"\} +ready again/,
      // The drain: readiness fails at once while requests in flight get their answers, then the process exits.
      /SIGTERM sent/,
      /\[server\] shutdown: draining/,
      /\[server\] shutdown: exit after [\d.]+ s \(exit 0\)/,
      /GET \/readyz → connection refused/,
      /→ process exited with code 0/,
    ])
    const drain = health.slice(health.indexOf('SIGTERM sent'))
    expect(drain).toMatch(/GET \/readyz → 503 \{"status":"fail"\}/)
    // Each in-flight request is answered (200, or 503 at its 200 ms budget on a loaded machine), never cut off.
    for (const n of [1, 2, 3]) expect(drain).toMatch(new RegExp(`in-flight #${n} → (200|503)\\n`))
    expect(drain.indexOf('GET /readyz → 503')).toBeLessThan(drain.indexOf('connection refused'))
  }, 120_000)
})
