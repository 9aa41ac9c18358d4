// A child process of the shutdown-flush test: an Express order route guarded by RedisIdempotencyStore, under
// graceful shutdown on SIGTERM (no drain delay, TIMEOUT_MS, the Redis client closed in a hook). It prints
// `listening <port>` and one JSON line per handler start, settled idempotency outcome and exit code on stdout
// (synchronous on a pipe, so the last lines are not lost to process.exit). Bundled by shutdown-flush.test.ts.

import { randomUUID } from 'node:crypto'
import { subscribe } from 'node:diagnostics_channel'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { IdempotencySettledEvent } from '@breakwater/core'
import { gracefulShutdown, idempotency } from '@breakwater/express'
import { RedisIdempotencyStore } from '@breakwater/redis'
import express from 'express'
import { Redis } from 'ioredis'

function print(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`)
}

const client = new Redis(String(process.env.REDIS_URL), { maxRetriesPerRequest: 1 })
client.on('error', () => {}) // the parent pauses Redis on purpose
subscribe('breakwater:idempotency:settled', (message) => {
  const { outcome, status } = message as IdempotencySettledEvent
  print({ settled: outcome, status })
})

const app = express()
app.use(express.json())
app.post(
  '/orders',
  idempotency({
    store: new RedisIdempotencyStore({ client, prefix: String(process.env.PREFIX) }),
    scope: (request) => request.header('authorization'),
    storeTimeoutMs: Number(process.env.STORE_TIMEOUT_MS),
  }),
  async (req, res) => {
    print({ started: req.header('idempotency-key') })
    await sleep(Number(req.query.delayMs ?? 0))
    res.status(201).json({ id: randomUUID() })
  },
)

client.once('ready', () => {
  const server = app.listen(0, '127.0.0.1', () => {
    print({ listening: (server.address() as AddressInfo).port })
  })
  gracefulShutdown(server, {
    signals: ['SIGTERM'],
    drainDelayMs: 0,
    timeoutMs: Number(process.env.TIMEOUT_MS),
    hookTimeoutMs: Number(process.env.HOOK_TIMEOUT_MS),
    hooks: [{ name: 'redis', run: () => client.quit() }],
    exit: (code) => {
      print({ exit: code })
      process.exit(code)
    },
  })
})
