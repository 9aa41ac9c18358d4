// Runs once before the integration suites: starts the run's own redis-server on a free port (never the
// machine's 6379) and hands its URL to every test file. Redis-backed suites fail loudly, never skip.

import type { TestProject } from 'vitest/node'
import { assertRedisInstalled, startRedis } from './redis-process.js'

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  assertRedisInstalled()
  const server = await startRedis()
  project.provide('redisUrl', server.url)
  // Also through the environment: child processes spawned by tests inherit it.
  process.env.BW_TEST_REDIS_URL = server.url
  return () => server.stop()
}
