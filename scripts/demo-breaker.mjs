// The demo's circuit-breaker section: an example app calls a loopback upstream through its `inventory`
// dependency; the upstream fails, the breaker opens and answers 503 at once without calling it, then a probe
// after the open second finds it healthy again and the breaker closes.

import http from 'node:http'
import { performance } from 'node:perf_hooks'

/**
 * @param {(framework: string, env: Record<string, string>) => Promise<{ base: string, stop: () => Promise<unknown> }>} startExample
 * @param {string} framework
 */
export async function circuitBreakerSection(startExample, framework) {
  let failing = false
  let calls = 0
  const upstream = http.createServer((_req, res) => {
    calls++
    res.writeHead(failing ? 500 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(failing ? { error: 'down' } : { sku: 42, stock: 7 }))
  })
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', () => resolve(undefined)))
  const address = /** @type {import('node:net').AddressInfo} */ (upstream.address())
  const app = await startExample(framework, { UPSTREAM_URL: `http://127.0.0.1:${address.port}` })
  try {
    console.log('\n  Circuit breaker — GET /api/upstream/inventory (opens after 5 failed attempts, open 1 s, 1 probe):')
    const get = async (label) => {
      const started = performance.now()
      const response = await fetch(`${app.base}/api/upstream/inventory`)
      const body = await response.json()
      const ms = (performance.now() - started).toFixed(1)
      const retry = response.headers.get('retry-after')
      console.log(
        `    ${label}: ${response.status} in ${ms} ms  ${body.code ?? body.source}${retry ? `  Retry-After: ${retry}` : ''}  (upstream calls so far: ${calls})`,
      )
    }
    await get('healthy upstream  ')
    failing = true
    for (let i = 1; i <= 5; i++) await get(`upstream fails #${i}`)
    await get('breaker open      ')
    await get('breaker open      ')
    failing = false
    await new Promise((resolve) => setTimeout(resolve, 1_100))
    await get('after 1 s: probe  ')
    await get('closed again      ')
    console.log('    → while open, the app answered at once and the upstream saw no calls; one probe closed it')
  } finally {
    await app.stop()
    upstream.close()
  }
}
