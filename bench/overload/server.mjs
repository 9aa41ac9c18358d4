// The overload experiment's server: `node bench/overload/server.mjs <variant>`. Its one route calls a simulated
// downstream with a fixed capacity (SLOTS calls at a time, SERVICE_MS each, the rest wait in FIFO order), so its
// latency grows with its queue — and it keeps working on calls whose clients have given up, as a database would.

import Fastify from 'fastify'
import { breakwater, exitOnSignal, ready, unavailable, unknownVariant, variantName } from '../servers/common.mjs'

/** Calls the downstream serves at once. */
export const SLOTS = Number(process.env.OVERLOAD_SLOTS ?? 4)
/** Milliseconds each call takes once it has a slot. */
export const SERVICE_MS = Number(process.env.OVERLOAD_SERVICE_MS ?? 50)

/** The hand-picked limit of the static row: twice the downstream's slots (a guess a user could make knowing them). */
const STATIC_LIMIT = 2 * SLOTS

const VARIANTS = {
  none: async () => ({}),

  // @fastify/under-pressure (a bench dependency) with the thresholds of its README.
  'under-pressure': async () => {
    let plugin
    try {
      plugin = (await import('@fastify/under-pressure')).default
    } catch {
      unavailable('@fastify/under-pressure is not installed in bench/')
    }
    return {
      plugin,
      options: {
        maxEventLoopDelay: 1000,
        maxHeapUsedBytes: 100_000_000,
        maxRssBytes: 100_000_000,
        maxEventLoopUtilization: 0.98,
      },
    }
  },

  'breakwater-static': async () => ({
    plugin: await breakwater('@breakwater/fastify', 'loadShedding'),
    options: { limit: STATIC_LIMIT },
  }),

  // Defaults only: Gradient2, no queue, nothing tuned to this downstream.
  'breakwater-adaptive': async () => ({ plugin: await breakwater('@breakwater/fastify', 'loadShedding'), options: {} }),
}

/** The simulated downstream: a slot for SERVICE_MS, or a place in its FIFO queue until one frees up. */
const waiting = []
let head = 0
let busy = 0
function downstream() {
  return new Promise((resolve) => {
    if (busy < SLOTS) {
      busy++
      serve(resolve)
    } else waiting.push(resolve)
  })
}
function serve(resolve) {
  setTimeout(() => {
    resolve()
    if (head < waiting.length) {
      serve(waiting[head++])
      if (head > 1024 && head * 2 > waiting.length) {
        waiting.splice(0, head)
        head = 0
      }
    } else busy--
  }, SERVICE_MS)
}

const name = variantName()
const setup = VARIANTS[name] ?? unknownVariant('overload', name, Object.keys(VARIANTS))
const { plugin, options } = await setup()

const app = Fastify({ logger: false })
if (plugin) await app.register(plugin, options)
app.get('/work', async () => {
  await downstream()
  return { ok: true }
})

await app.listen({ port: 0, host: '127.0.0.1' })
ready(app.server.address().port)
exitOnSignal()
