// The Redis readiness check against the run's real redis-server: a PING that passes with its round trip, and a
// client that is not connected failing at once instead of queueing the PING behind a dead connection.

import { createHealth } from '@breakwater/core'
import { redisCheck } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { testRedisUrl } from '../support/redis-server.js'

const clients: Redis[] = []
afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect()
})

describe('redisCheck', () => {
  it('passes on a connected client, reporting the PING round trip in ms', async () => {
    const client = new Redis(testRedisUrl(), { lazyConnect: true })
    clients.push(client)
    await client.connect()
    const health = createHealth({ checks: [redisCheck(client)], started: true })
    const answer = await health.answer('ready')
    expect(answer.statusCode).toBe(200)
    const entry = answer.body.checks?.['redis:responseTime']?.[0]
    expect(entry).toMatchObject({ status: 'pass', observedUnit: 'ms', critical: true })
    expect(entry?.observedValue).toBeGreaterThanOrEqual(0)
  })

  it('fails readiness at once when the client is not connected (default ioredis offline queue on)', async () => {
    const client = new Redis(testRedisUrl(), { lazyConnect: true })
    clients.push(client)
    const health = createHealth({ checks: [redisCheck(client, { timeoutMs: 2_000 })], started: true })
    const started = performance.now()
    const answer = await health.answer('ready')
    expect(performance.now() - started).toBeLessThan(500) // not the 2 s timeout
    expect(answer.statusCode).toBe(503)
    expect(answer.body.checks?.['redis:responseTime']?.[0]).toMatchObject({
      status: 'fail',
      output: 'Redis client is wait',
    })
    const lenient = createHealth({ checks: [redisCheck(client, { critical: false, name: 'cache' })], started: true })
    const warned = await lenient.answer('ready')
    expect([warned.statusCode, warned.body.status]).toEqual([200, 'warn'])
    expect(warned.body.checks?.['cache:responseTime']?.[0]?.status).toBe('warn')
  })
})
