// The outage's upstream: one loopback HTTP server standing in for two dependencies, per variant under its own
// path prefix (`/<variant>/inventory`, `/<variant>/recommendations`, `POST /<variant>/orders`), so every variant
// meets the same scripted timeline with its own capacity. Inventory (and the orders it books) follows the
// timeline of timeline.mjs through a pool of INVENTORY_SLOTS with a FIFO queue, and — like a database — finishes
// work whose caller has given up; recommendations stays healthy. It counts the calls it receives per second per
// route and the executions of each Idempotency-Key. Control: POST /_start?t0=<epoch ms>&phases=<json>, GET /_stats.

import { createServer } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { INVENTORY_QUEUE, INVENTORY_SLOTS, inventoryAt } from './timeline.mjs'

/** Recommendations: ~10 ms, and 1 % of calls take 15× that (the tail hedging is for). */
const RECOMMENDATIONS_MS = 10
const RECOMMENDATIONS_TAIL = { share: 0.01, factor: 15 }

let t0 = Number.POSITIVE_INFINITY
/** @type {Record<string, number>} */
let phases = {}

/** @type {Map<string, { arrivals: Record<string, Record<number, number>>, pool: Pool, executions: Map<string, number>, refused: number }>} */
const variants = new Map()

/** A pool of `slots` with a bounded FIFO queue: the inventory service's capacity. */
class Pool {
  busy = 0
  /** @type {(() => void)[]} */
  waiting = []
  /** @returns {Promise<void> | undefined} undefined when the queue is full */
  acquire() {
    if (this.busy < INVENTORY_SLOTS) {
      this.busy++
      return Promise.resolve()
    }
    if (this.waiting.length >= INVENTORY_QUEUE) return undefined
    return new Promise((resolve) => this.waiting.push(resolve))
  }
  release() {
    const next = this.waiting.shift()
    if (next) next()
    else this.busy--
  }
}

function variantState(name) {
  let state = variants.get(name)
  if (!state) {
    state = { arrivals: {}, pool: new Pool(), executions: new Map(), refused: 0 }
    variants.set(name, state)
  }
  return state
}

const jitter = (ms) => ms * (0.8 + 0.4 * Math.random())
const secondsSinceStart = () => (Date.now() - t0) / 1000

/** @param {import('node:http').ServerResponse} res */
function json(res, status, body) {
  if (res.destroyed) return
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function readBody(req) {
  let body = ''
  for await (const chunk of req) body += chunk
  return body
}

/** Inventory and orders: the scripted behaviour, through the variant's pool. */
async function inventory(state, res, onExecute) {
  const { serviceMs, fails } = inventoryAt(phases, secondsSinceStart())
  if (fails) {
    await sleep(jitter(serviceMs))
    state.refused++
    return json(res, 503, { error: 'inventory is down' })
  }
  const slot = state.pool.acquire()
  if (slot === undefined) {
    state.refused++
    return json(res, 503, { error: 'inventory is overloaded' })
  }
  await slot
  // Service time is decided when the call gets its slot: a call queued into the saturated phase is slow too.
  const now = inventoryAt(phases, secondsSinceStart())
  onExecute?.()
  try {
    await sleep(jitter(now.serviceMs))
  } finally {
    state.pool.release()
  }
  json(res, 200, { sku: 42, stock: 7, servedAt: Date.now() })
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1')
  if (url.pathname === '/_start' && req.method === 'POST') {
    t0 = Number(url.searchParams.get('t0'))
    phases = JSON.parse(url.searchParams.get('phases') ?? '{}')
    variants.clear()
    return json(res, 200, { ok: true })
  }
  if (url.pathname === '/_stats') {
    const out = {}
    for (const [name, state] of variants) {
      let duplicateExecutions = 0
      let duplicateKeys = 0
      let executed = 0
      for (const count of state.executions.values()) {
        executed += count
        if (count > 1) {
          duplicateKeys++
          duplicateExecutions += count - 1
        }
      }
      out[name] = {
        arrivals: state.arrivals,
        orders: { keys: state.executions.size, executed, duplicateKeys, duplicateExecutions },
        refused: state.refused,
      }
    }
    return json(res, 200, out)
  }
  const [, variant, route] = url.pathname.split('/')
  if (!variant || !['inventory', 'recommendations', 'orders'].includes(route)) return json(res, 404, {})
  const state = variantState(variant)
  const second = Math.floor(secondsSinceStart())
  if (second >= 0) {
    state.arrivals[route] ??= {}
    const perRoute = state.arrivals[route]
    perRoute[second] = (perRoute[second] ?? 0) + 1
  }
  // Work goes on when the caller hangs up (as a database's does); only the answer is dropped.
  res.on('error', () => {})
  if (route === 'recommendations') {
    const tail = Math.random() < RECOMMENDATIONS_TAIL.share ? RECOMMENDATIONS_TAIL.factor : 1
    await sleep(jitter(RECOMMENDATIONS_MS * tail))
    return json(res, 200, { items: [{ sku: 7 }, { sku: 9 }] })
  }
  if (route === 'inventory') return inventory(state, res)
  if (req.method !== 'POST') return json(res, 405, {})
  await readBody(req)
  const key = req.headers['idempotency-key']
  // Every execution of an order counts, per key: a retry that books the same order twice is a duplicate.
  return inventory(state, res, () => {
    if (typeof key === 'string') state.executions.set(key, (state.executions.get(key) ?? 0) + 1)
  })
})
server.keepAliveTimeout = 60_000

server.listen(0, '127.0.0.1', () => {
  const address = /** @type {import('node:net').AddressInfo} */ (server.address())
  process.stdout.write(`${JSON.stringify({ ready: true, port: address.port })}\n`)
})
const stop = () => server.close(() => process.exit(0)) && server.closeAllConnections()
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
