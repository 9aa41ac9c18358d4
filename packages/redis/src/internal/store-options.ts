// Option checks shared by every Redis store: the user's ioredis client and the key prefix.

import { InvalidOptionError, knownOptions, optionKeys } from '@breakwater/core'
import type { Cluster, Redis } from 'ioredis'

/** Longest key prefix accepted. */
export const PREFIX_MAX_LENGTH = 128

/** Every option of the Redis stores (`RedisRateLimitStore`, `RedisIdempotencyStore`, `RedisBreakerStateStore`, `RedisResultStore`); any other key is an error naming it. */
const OPTIONS = optionKeys<{ client: unknown; prefix?: string }>()(['client', 'prefix'])

/** The `client` option: an ioredis `Redis` or `Cluster` (anything with `defineCommand` and `del`). */
export function checkClient(options: unknown, what: string): Redis | Cluster {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('options', options, 'an object with a `client`')
  }
  knownOptions(what, options, OPTIONS)
  const client = (options as { client?: unknown }).client
  if (
    typeof client !== 'object' ||
    client === null ||
    typeof (client as Redis).defineCommand !== 'function' ||
    typeof (client as Redis).del !== 'function'
  ) {
    throw new InvalidOptionError('client', client, 'an ioredis Redis or Cluster client')
  }
  return client as Redis | Cluster
}

/** The `prefix` option (default `"bw:"`): no braces, so it can never open or close a Cluster hash tag. */
export function checkPrefix(prefix: unknown = 'bw:'): string {
  if (typeof prefix !== 'string' || prefix.length > PREFIX_MAX_LENGTH || /[{}]/.test(prefix)) {
    throw new InvalidOptionError('prefix', prefix, `a string of at most ${PREFIX_MAX_LENGTH} characters without { or }`)
  }
  return prefix
}
