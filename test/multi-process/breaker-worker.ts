// A child process of the shared-breaker test: one breaker with a RedisBreakerStateStore in front of the real
// loopback upstream. The opener fails its way open; a follower keeps calling and reports when it stopped.

import { createCircuitBreaker } from '@breakwater/core'
import { RedisBreakerStateStore } from '@breakwater/redis'
import { Redis } from 'ioredis'

interface Job {
  role: 'opener' | 'follower'
  redisUrl: string
  prefix: string
  name: string
  upstream: string
  shareIntervalMs: number
  durationMs: number
}

export interface BreakerReport {
  role: Job['role']
  /** Wall-clock ms: when the opener's breaker opened, or when a follower's first call was rejected. */
  at: number
  /** Calls that reached the upstream after the first rejection (must be 0 while open). */
  ranAfterRejection: number
  /** Calls that reached the upstream. */
  ran: number
  /** Reads of the shared state. */
  reads: number
  /** How long a follower called. */
  elapsedMs: number
  state: string
  errors: string[]
}

const job = JSON.parse(process.argv[2] ?? '{}') as Job
const client = new Redis(job.redisUrl, { maxRetriesPerRequest: 1 })
const shared = new RedisBreakerStateStore({ client, prefix: job.prefix })
const report: BreakerReport = {
  role: job.role,
  elapsedMs: 0,
  at: 0,
  ranAfterRejection: 0,
  ran: 0,
  reads: 0,
  state: '',
  errors: [],
}
const store = {
  open: (name: string, ms: number) => shared.open(name, ms),
  openRemainingMs: (name: string) => {
    report.reads++
    return shared.openRemainingMs(name)
  },
}
const breaker = createCircuitBreaker({
  name: job.name,
  consecutiveFailures: 3,
  openMs: 5_000,
  store,
  shareIntervalMs: job.shareIntervalMs,
})

async function call(path: string): Promise<void> {
  try {
    await breaker.execute(async ({ signal }) => {
      report.ran++
      if (report.at !== 0) report.ranAfterRejection++
      const response = await fetch(`${job.upstream}${path}`, { signal })
      await response.text()
      return response
    })
  } catch (error) {
    if ((error as { code?: string }).code === 'BW_CIRCUIT_OPEN') {
      if (report.at === 0 && job.role === 'follower') report.at = Date.now()
    } else report.errors.push(String(error))
  }
}

async function run(): Promise<void> {
  if (job.role === 'opener') {
    for (let i = 0; i < 3; i++) await call('/flaky')
    report.at = Date.now()
    // Let the fire-and-forget write reach Redis before reporting.
    await new Promise((resolve) => setTimeout(resolve, 100))
  } else {
    // Until `durationMs` after the first rejection (so calls after it are seen), or a hard cap.
    const started = Date.now()
    while (Date.now() - started < 20_000 && (report.at === 0 || Date.now() - report.at < job.durationMs)) {
      await call('/fast')
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    report.elapsedMs = Date.now() - started
  }
  report.state = breaker.state
}

client.once('ready', () => process.send?.('ready'))
process.once('message', async () => {
  await run()
  process.send?.(report, () => {
    client.disconnect()
    process.disconnect()
  })
})
