// Helpers of the adapter conformance suite: the store dimension (memory, Redis) and a raw HTTP client for what
// fetch hides (separate header lines, Unix sockets, aborted requests).

import { randomUUID } from 'node:crypto'
import http, { type IncomingHttpHeaders } from 'node:http'
import { MemoryRateLimitStore, type RateLimitOptions } from '@breakwater/core'
import { RedisRateLimitStore } from '@breakwater/redis'
import { Redis } from 'ioredis'
import { testRedisUrl } from '../support/redis-server.js'

export const STORES = ['memory', 'redis'] as const
export type StoreKind = (typeof STORES)[number]

/** Adds a fresh store to limiter options; Redis stores get a prefix no other test uses. */
export interface StoreKit {
  with(options: RateLimitOptions): RateLimitOptions
  close(): Promise<void>
}

export async function storeKit(kind: StoreKind): Promise<StoreKit> {
  if (kind === 'memory')
    return { with: (options) => ({ store: new MemoryRateLimitStore(), ...options }), close: async () => {} }
  // The settings the README recommends: a dead Redis fails fast instead of queueing requests.
  const client = new Redis(testRedisUrl(), { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  await client.connect()
  const run = randomUUID().slice(0, 8)
  let n = 0
  return {
    // fail-closed with a generous timeout: a broken Redis shows up as 503s, never as silently passing tests.
    with: (options) => ({
      store: new RedisRateLimitStore({ client, prefix: `bw:conformance:${run}:${n++}:` }),
      storeTimeoutMs: 2000,
      onStoreError: 'fail-closed',
      ...options,
    }),
    close: async () => {
      await client.quit()
    },
  }
}

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  /** Header names and values as sent, one entry per header line. */
  rawHeaders: string[]
  body: string
}

export interface RawRequestOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
  socketPath?: string
}

/** One request with node:http (no connection reuse), exposing the raw header lines. */
export function rawRequest(url: string, options: RawRequestOptions = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: options.method ?? 'GET', headers: options.headers, socketPath: options.socketPath, agent: false },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('error', reject)
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            rawHeaders: response.rawHeaders,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
      },
    )
    request.on('error', reject)
    request.end(options.body)
  })
}

/** Header lines named `name` (case-insensitive), as sent. */
export function headerLines(response: RawResponse, name: string): string[] {
  const lines: string[] = []
  for (let i = 0; i < response.rawHeaders.length; i += 2) {
    if (response.rawHeaders[i]?.toLowerCase() === name.toLowerCase()) lines.push(response.rawHeaders[i + 1] ?? '')
  }
  return lines
}

/** Poll `condition` until it holds or the timeout passes (the core tests' helper). */
export { until } from '../../packages/core/test/helpers.js'
