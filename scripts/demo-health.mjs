// The demo's health section: the three probes passing, a readiness check failing while liveness holds, the
// details only a token sees, the dependency recovering, then the drain on SIGTERM with requests in flight.

import http from 'node:http'
import { performance } from 'node:perf_hooks'

const TOKEN = 'demo-token'
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * @param {(framework: string, env: Record<string, string>) => Promise<{ base: string, child: import('node:child_process').ChildProcess, stop: () => Promise<unknown> }>} startExample
 * @param {string} framework
 */
export async function healthSection(startExample, framework) {
  // A loopback dependency with a health endpoint of its own, which the section then makes fail.
  let failing = false
  const dependency = http.createServer((_req, res) => {
    res.writeHead(failing ? 503 : 200, { 'content-type': 'application/health+json' })
    res.end(JSON.stringify({ status: failing ? 'fail' : 'pass' }))
  })
  await new Promise((resolve) => dependency.listen(0, '127.0.0.1', () => resolve(undefined)))
  const { port } = /** @type {import('node:net').AddressInfo} */ (dependency.address())
  const app = await startExample(framework, {
    HEALTH_TOKEN: TOKEN,
    HEALTH_CHECK_URL: `http://127.0.0.1:${port}/health`,
    SHUTDOWN_DRAIN_MS: '1000',
    SHUTDOWN_TIMEOUT_MS: '5000',
  })
  try {
    console.log(
      '\n  Health — GET /livez, /readyz, /startupz (HEALTH_TOKEN set; readiness also checks a loopback dependency):',
    )
    await probe(app.base, '/livez', 'alive: liveness runs no dependency checks')
    await probe(app.base, '/readyz', 'ready for traffic: every readiness check passes')
    await probe(app.base, '/startupz', 'started: the app called markStarted() once listening')
    await details(app.base)
    console.log('    → without the token a probe says only its status; checks, outputs and timings are not public')

    failing = true
    console.log(
      "\n    The dependency's own health endpoint now answers 503 (check results are reused for 1 s: wait 1.1 s):",
    )
    await sleep(1_100)
    await probe(app.base, '/readyz', 'not ready: a critical check fails')
    await probe(app.base, '/livez', 'still alive: restarting would not mend a dependency')
    await details(app.base)
    console.log('    → the balancer stops sending this replica traffic; nothing restarts it')

    failing = false
    console.log('\n    The dependency answers 200 again (and the cached failure expires after 1 s: wait 1.1 s):')
    await sleep(1_100)
    await probe(app.base, '/readyz', 'ready again, on its own')

    await drain(app)
  } finally {
    if (app.child.exitCode === null && app.child.signalCode === null) await app.stop()
    dependency.close()
  }
}

/** One public probe: what came back, and what it means. */
async function probe(base, path, meaning) {
  const response = await fetch(`${base}${path}`)
  console.log(`    GET ${path.padEnd(9)} → ${response.status} ${await response.text()}  ${meaning}`)
}

/** GET /readyz with the token: the status, why, and one line per check. */
async function details(base) {
  const response = await fetch(`${base}/readyz`, { headers: { authorization: `Bearer ${TOKEN}` } })
  /** @type {{ status: string, output?: string, checks?: Record<string, Array<{ status: string, observedValue?: unknown, observedUnit?: string, output?: string }>> }} */
  const body = await response.json()
  console.log(
    `    GET /readyz with Authorization: Bearer ${TOKEN} → ${response.status} "${body.status}"${body.output ? ` (${body.output})` : ''}, per check:`,
  )
  for (const [key, [report]] of Object.entries(body.checks ?? {})) {
    const value = report.observedValue === undefined ? '' : `${report.observedValue} ${report.observedUnit ?? ''}`
    const line = `      ${key.padEnd(24)} ${report.status.padEnd(4)}  ${value.padEnd(12)}  ${report.output ?? ''}`
    console.log(line.trimEnd())
  }
}

/** SIGTERM with requests in flight: readiness answers 503 while they finish, then the listener closes. */
async function drain(app) {
  console.log(
    '\n  Graceful shutdown — SIGTERM with 3 GET /api/slow?ms=180 in flight (SHUTDOWN_DRAIN_MS=1000, SHUTDOWN_TIMEOUT_MS=5000):',
  )
  let t0 = performance.now()
  const stamp = () => `${String(Math.round(performance.now() - t0)).padStart(6)} ms`
  app.child.stdout.on('data', (chunk) => {
    for (const line of String(chunk).split('\n'))
      if (line.startsWith('shutdown:')) console.log(`    ${stamp()}  [server] ${line}`)
  })
  const exited = new Promise((resolve) => app.child.once('exit', (code) => resolve(code)))
  const inflight = [1, 2, 3].map(() => fetch(`${app.base}/api/slow?ms=180`).then((r) => r.status))
  await sleep(20)
  t0 = performance.now()
  app.child.kill('SIGTERM')
  console.log(`    ${stamp()}  SIGTERM sent`)
  for (const [i, request] of inflight.entries()) {
    void request.then((status) => console.log(`    ${stamp()}  in-flight #${i + 1} → ${status}`))
  }
  for (;;) {
    try {
      const probe = await fetch(`${app.base}/readyz`)
      console.log(`    ${stamp()}  GET /readyz → ${probe.status} ${await probe.text()}`)
    } catch {
      console.log(`    ${stamp()}  GET /readyz → connection refused (the listener is closed)`)
      break
    }
    await sleep(250)
  }
  console.log(`    ${stamp()}  → process exited with code ${await exited}`)
  console.log(
    '    → readiness failed at once so the balancer stops routing here; the in-flight requests finished; then it exited',
  )
}
