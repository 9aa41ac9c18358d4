// Runs once before the integration suites. Redis-backed suites need a Redis: fail loudly, never skip.

import { execFileSync } from 'node:child_process'

export default function setup(): void {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const { hostname, port } = new URL(url)
  try {
    const out = execFileSync('redis-cli', ['-h', hostname, '-p', port || '6379', 'ping'], { encoding: 'utf8' })
    if (!out.includes('PONG')) throw new Error(out)
  } catch (error) {
    throw new Error(
      `Integration tests need Redis at ${url} (set REDIS_URL) and redis-server/redis-cli on PATH; .ci/run installs them. ${String(error)}`,
    )
  }
}
