// The outage's load: `node bench/outage/load.mjs <config.json> <out.json>`, a process of its own so a slow app
// cannot slow it down. Open loop: each route of each variant gets requests at a fixed rate from the scheduled
// start (t0 − warm-up) to the end of the timeline, whatever the app does; latency counts from each request's
// scheduled time. 127.0.0.1 only, bounded by the timeline and the client timeout.

import { readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The routes driven, in the order of the records' route index. */
export const ROUTES = /** @type {const} */ (['inventory', 'recommendations', 'orders'])

/**
 * @typedef {{ t0: number, warmupS: number, durationS: number, clientTimeoutMs: number,
 *   rates: Record<typeof ROUTES[number], number>, targets: { variant: string, port: number }[] }} LoadConfig
 * One answer: [route index, scheduled ms from t0, status (0 timed out, -1 connection error), latency ms,
 * source (0 upstream or unknown, 1 fallback, 2 stale, 3 a 503 of the app's own load shedding)].
 * @typedef {[number, number, number, number, number]} LoadRecord
 */

const SOURCES = { upstream: 0, fallback: 1, stale: 2 }
/** A 503 of the app's own load shedding (@fastify/under-pressure's body, or Breakwater's BW_OVERLOADED). */
const SHED = /"statusCode":503|BW_OVERLOADED/

/**
 * Drive every target for the whole timeline and resolve to its records.
 * @param {LoadConfig} config
 * @returns {Promise<Record<string, LoadRecord[]>>}
 */
export async function drive(config) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
  /** @type {Record<string, LoadRecord[]>} */
  const records = Object.fromEntries(config.targets.map(({ variant }) => [variant, []]))
  const startMs = -config.warmupS * 1000
  const endMs = config.durationS * 1000
  const streams = config.targets.flatMap((target) =>
    ROUTES.filter((route) => config.rates[route] > 0).map((route) => ({
      target,
      route,
      routeIndex: ROUTES.indexOf(route),
      intervalMs: 1000 / config.rates[route],
      next: 0,
    })),
  )
  let pending = 0
  let allScheduled = false
  let resolveDone = () => {}
  const done = new Promise((resolve) => {
    resolveDone = resolve
  })
  const settle = () => {
    if (--pending === 0 && allScheduled) resolveDone(undefined)
  }

  const send = (stream, scheduledMs) => {
    const { target, route, routeIndex } = stream
    const index = stream.next++
    const isPost = route === 'orders'
    const path = isPost
      ? '/api/upstream/orders'
      : route === 'inventory'
        ? `/api/upstream/inventory?sku=${index % 10}`
        : '/api/upstream/recommendations'
    const body = isPost ? JSON.stringify({ sku: index % 10, quantity: 1 }) : undefined
    const headers = isPost
      ? {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'idempotency-key': `"${target.variant}-${config.t0}-${index}"`,
        }
      : {}
    pending++
    let finished = false
    const finish = (status, source = 0) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      const latency = Date.now() - config.t0 - scheduledMs
      if (scheduledMs >= 0) records[target.variant].push([routeIndex, scheduledMs, status, latency, source])
      settle()
    }
    const request = http.request({
      host: '127.0.0.1',
      port: target.port,
      path,
      method: isPost ? 'POST' : 'GET',
      headers,
      agent,
    })
    const timer = setTimeout(() => {
      finish(0)
      request.destroy()
    }, config.clientTimeoutMs)
    request.on('response', (response) => {
      let text = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => {
        if (text.length < 4096) text += chunk
      })
      response.on('end', () => {
        let source = 0
        if (!isPost && response.statusCode === 200) {
          try {
            source = SOURCES[JSON.parse(text).source] ?? 0
          } catch {}
        } else if (response.statusCode === 503 && SHED.test(text)) source = 3
        finish(response.statusCode ?? -1, source)
      })
      response.on('error', () => finish(-1))
    })
    request.on('error', () => finish(-1))
    request.end(body)
  }

  const tick = setInterval(() => {
    const now = Date.now() - config.t0
    let remaining = false
    for (const stream of streams) {
      for (;;) {
        const due = startMs + stream.next * stream.intervalMs
        if (due >= endMs) break
        remaining = true
        if (due > now) break
        send(stream, due)
      }
    }
    if (!remaining) {
      clearInterval(tick)
      allScheduled = true
      if (pending === 0) resolveDone(undefined)
    }
  }, 2)
  await done
  agent.destroy()
  return records
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [configPath, outPath] = process.argv.slice(2)
  const config = JSON.parse(readFileSync(configPath, 'utf8'))
  const records = await drive(config)
  writeFileSync(outPath, JSON.stringify(records))
}
