// RedisRateLimitStore without a server: option checks, script registration per client, key layout. Decisions against a
// real Redis and Cluster are proven in test/store-conformance.

import { isInvalidOptionError, type ResolvedRule } from '@breakwater/core'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { RedisRateLimitStore } from '../src/index.js'
import { ruleSuffix, taggedKey } from '../src/internal/key-layout.js'

const clients: Array<Redis | Cluster> = []

/** A client that never reaches a server: port 1 refuses, no retries, no offline queue — commands fail at once. */
function unreachableClient(options: RedisOptions = {}): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: 1,
    lazyConnect: true,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...options,
  })
  client.on('error', () => {})
  clients.push(client)
  return client
}

afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect()
})

const rule = (name: string): ResolvedRule =>
  Object.freeze({ name, algorithm: 'gcra', limit: 5, windowMs: 1000, burst: 5 })

function invalidOption(fn: () => unknown): { option: string; message: string } {
  try {
    fn()
  } catch (error) {
    if (isInvalidOptionError(error)) return { option: error.option, message: error.message }
    throw error
  }
  throw new Error('expected an InvalidOptionError')
}

describe('new RedisRateLimitStore(options)', () => {
  it('takes an ioredis Redis or Cluster client and defaults the prefix to "bw:"', () => {
    const store = new RedisRateLimitStore({ client: unreachableClient() })
    expect(store.prefix).toBe('bw:')
    expect(store.local).toBe(false)
    const cluster = new Cluster([{ host: '127.0.0.1', port: 1 }], { lazyConnect: true })
    clients.push(cluster)
    expect(new RedisRateLimitStore({ client: cluster, prefix: 'app:' }).prefix).toBe('app:')
  })

  it('rejects a missing or foreign client with BW_INVALID_OPTION naming `client`', () => {
    expect(invalidOption(() => new RedisRateLimitStore(undefined as never))).toMatchObject({ option: 'options' })
    expect(invalidOption(() => new RedisRateLimitStore({} as never))).toMatchObject({
      option: 'client',
      message: expect.stringContaining('got undefined'),
    })
    expect(invalidOption(() => new RedisRateLimitStore({ client: { get() {} } as never }))).toMatchObject({
      option: 'client',
      message: expect.stringContaining('an ioredis Redis or Cluster client'),
    })
  })

  it('rejects a prefix that is not a string or contains a hash-tag brace, naming the value', () => {
    const client = unreachableClient()
    expect(invalidOption(() => new RedisRateLimitStore({ client, prefix: 'app{1}:' }))).toMatchObject({
      option: 'prefix',
      message: expect.stringContaining('"app{1}:"'),
    })
    expect(invalidOption(() => new RedisRateLimitStore({ client, prefix: 42 as never }))).toMatchObject({
      option: 'prefix',
      message: expect.stringContaining('got 42'),
    })
    expect(invalidOption(() => new RedisRateLimitStore({ client, prefix: 'x'.repeat(129) }))).toMatchObject({
      option: 'prefix',
    })
  })
})

describe('script registration', () => {
  it('defines the script once per client, shared by every store on that client and every rule count', async () => {
    const client = unreachableClient()
    const define = vi.spyOn(client, 'defineCommand')
    const a = new RedisRateLimitStore({ client })
    const b = new RedisRateLimitStore({ client, prefix: 'other:' })
    expect(define).not.toHaveBeenCalled()
    await expect(a.consume('k', [rule('x')], 1)).rejects.toThrow()
    await expect(b.peek('k', [rule('x')], 1)).rejects.toThrow()
    await expect(b.consume('k', [rule('x'), rule('y')], 1)).rejects.toThrow()
    expect(define).toHaveBeenCalledTimes(1)
    // No fixed key count: one call carries the keys of every decision of a turn, its count first.
    expect(define.mock.calls[0]![1]).not.toHaveProperty('numberOfKeys')
  })

  it('opts its own command out of auto-pipelining on that single-node client alone (it batches by itself)', async () => {
    const client = unreachableClient({ enableAutoPipelining: true, autoPipeliningIgnoredCommands: ['hgetall'] })
    const other = unreachableClient({ enableAutoPipelining: true })
    const plain = unreachableClient()
    await expect(new RedisRateLimitStore({ client }).consume('k', [rule('x')], 1)).rejects.toThrow()
    await expect(new RedisRateLimitStore({ client: plain }).consume('k', [rule('x')], 1)).rejects.toThrow()
    const ignored = client.options.autoPipeliningIgnoredCommands
    expect(ignored).toHaveLength(2)
    expect(ignored?.[0]).toBe('hgetall') // the user's own entries stay
    expect(ignored?.[1]).toMatch(/^breakwaterRateLimit_[0-9a-f]{10}$/)
    // ioredis's defaults share one array between clients (\`other\` holds it): it did not change.
    expect(other.options.autoPipeliningIgnoredCommands).toEqual([])
    expect(plain.options.autoPipeliningIgnoredCommands).toEqual([]) // not pipelining: nothing to opt out of
  })

  it('rejects every consume of a turn with several keys (one script call) when Redis cannot be reached', async () => {
    const store = new RedisRateLimitStore({ client: unreachableClient({ enableAutoPipelining: true }) })
    const results = await Promise.allSettled(['a', 'b', 'c', 'a'].map((key) => store.consume(key, [rule('x')], 1)))
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected'])
  })

  it('never quits the client on shutdown', () => {
    const client = unreachableClient()
    const quit = vi.spyOn(client, 'quit')
    const disconnect = vi.spyOn(client, 'disconnect')
    new RedisRateLimitStore({ client }).shutdown()
    expect(quit).not.toHaveBeenCalled()
    expect(disconnect).not.toHaveBeenCalled()
  })

  it('answers an empty rule list without calling Redis', async () => {
    const store = new RedisRateLimitStore({ client: unreachableClient() })
    await expect(store.consume('k', [], 1)).resolves.toEqual({ allowed: true, retryAfterMs: 0, rules: [] })
    await expect(store.reset('k', [])).resolves.toBeUndefined()
  })
})

describe('key layout', () => {
  it('is `<prefix>{<key>}:<rule>`: one hash tag per client key, shared by all its rules', () => {
    expect(taggedKey('bw:', 'rate-limit:203.0.113.7') + ruleSuffix('burst')).toBe('bw:{rate-limit:203.0.113.7}:burst')
  })

  it('percent-encodes braces and `%` so every key keeps a non-empty hash tag and no two keys collide', () => {
    expect(taggedKey('bw:', '}a')).toBe('bw:{%7Da')
    expect(taggedKey('bw:', '{a}')).toBe('bw:{%7Ba%7D')
    expect(taggedKey('bw:', '%7Ba%7D')).toBe('bw:{%257Ba%257D')
    const keys = ['{a}', '%7Ba%7D', '%257Ba%257D', 'a', '%a', '}', '{', '%']
    expect(new Set(keys.map((k) => taggedKey('', k))).size).toBe(keys.length)
  })
})
