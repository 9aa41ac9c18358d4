// A circuit breaker shared over Redis by four processes: when one process opens it, the three others stop calling
// the upstream within their share interval (plus a round trip), reading Redis at most once per interval — never
// once per call. Real Redis, real child processes, a real loopback upstream.

import { type ChildProcess, fork } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startUpstream, type Upstream } from '../outbound/upstream.js'
import { bundleForChild } from '../support/bundle.js'
import { testRedisUrl } from '../support/redis-server.js'
import type { BreakerReport } from './breaker-worker.js'

const FOLLOWERS = 3
const SHARE_INTERVAL_MS = 100
/** Followers keep calling this long after their first rejection. */
const FOLLOW_MS = 500
const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))

let upstream: Upstream
beforeAll(async () => {
  await bundleForChild(here('./breaker-worker.ts'))
  upstream = await startUpstream()
})
afterAll(async () => {
  await upstream?.close()
})

function reportOf(worker: ChildProcess): Promise<BreakerReport> {
  return new Promise((resolve, reject) => {
    worker.on('message', (message) => {
      if (message !== 'ready') resolve(message as BreakerReport)
    })
    worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)))
  })
}

describe('circuit breaker shared over Redis', () => {
  it('one process opening makes the others fail fast within the share interval, without a read per call', async () => {
    const name = `inventory-${randomUUID().slice(0, 8)}`
    // One prefix for all: the same breaker key.
    const prefix = `bw_breaker_${randomUUID().slice(0, 8)}:`
    const job = (role: 'opener' | 'follower') =>
      JSON.stringify({
        role,
        redisUrl: testRedisUrl(),
        prefix,
        name,
        upstream: upstream.url,
        shareIntervalMs: SHARE_INTERVAL_MS,
        durationMs: FOLLOW_MS,
      })
    const start = (role: 'opener' | 'follower') =>
      fork(here('./dist/breaker-worker.js'), [job(role)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const followers = Array.from({ length: FOLLOWERS }, () => start('follower'))
    const opener = start('opener')
    const all = [...followers, opener]
    try {
      const reports = all.map(reportOf)
      await Promise.all(all.map((worker) => once(worker, 'message')))
      for (const follower of followers) follower.send('go')
      await new Promise((resolve) => setTimeout(resolve, 300)) // followers call a healthy upstream meanwhile
      opener.send('go')
      const [openerReport, ...followerReports] = [
        await reports[FOLLOWERS],
        ...(await Promise.all(reports.slice(0, FOLLOWERS))),
      ] as BreakerReport[]
      expect(openerReport?.state).toBe('open')
      for (const report of followerReports) {
        expect(report.errors).toEqual([])
        expect({ state: report.state, rejected: report.at > 0 }).toEqual({ state: 'open', rejected: true })
        // Bounded delay: one share interval plus a round trip (and scheduling slack on a busy 2-core machine).
        expect(report.at - (openerReport as BreakerReport).at).toBeLessThan(SHARE_INTERVAL_MS + 400)
        expect(report.ranAfterRejection).toBe(0) // open everywhere: no call reached the upstream
        // At most one read per interval while closed, and none once open: never one per call.
        expect(report.reads).toBeLessThanOrEqual(Math.ceil(report.elapsedMs / SHARE_INTERVAL_MS) + 1)
      }
    } finally {
      for (const worker of all) if (worker.exitCode === null) worker.kill()
    }
  })
})
