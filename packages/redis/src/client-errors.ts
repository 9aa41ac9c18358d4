// The `error` listener every ioredis client needs. Without one, ioredis reports each failed reconnect during an
// outage as an "Unhandled error event" with a stack trace — a flood while Redis is down.

import type { RedisClient } from './rate-limit-store.js'

/**
 * Listen to `client`'s errors and log one line when it loses Redis and one when it is back, instead of a stack
 * per failed reconnect. Returns a function that removes the listeners. Breakwater's stores never need it to work
 * (each call is bounded and has a failure policy); your logs do.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { logClientErrors } from '@breakwater/redis'
 *
 * const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true })
 * const stop = logClientErrors(client)
 * stop() // when the client is closed for good
 */
export function logClientErrors(
  client: RedisClient,
  log: (message: string) => void = (message) => console.error(message),
): () => void {
  let down = false
  const onError = (error: Error): void => {
    if (!down) log(`redis unavailable: ${error.message}`)
    down = true
  }
  const onReady = (): void => {
    if (down) log('redis available again')
    down = false
  }
  client.on('error', onError)
  client.on('ready', onReady)
  return () => {
    client.off('error', onError)
    client.off('ready', onReady)
  }
}
