// Test helpers: a plain RequestView, a hand-driven clock, a count of the request lifecycle's timers, and a
// remote-like shared rate-limit store for the store wrappers.

import { createHook } from 'node:async_hooks'

import {
  MemoryRateLimitStore,
  type RateLimitResult,
  type RateLimitStore,
  type RequestView,
  type ResolvedRule,
} from '../src/index.js'

export function view(ip: string | undefined = '192.0.2.1', headers: Record<string, string> = {}): RequestView {
  return {
    method: 'GET',
    path: '/',
    ip,
    header: (name) => headers[name.toLowerCase()],
    signal: new AbortController().signal,
  }
}

/** Poll `condition` every few ms until it holds; throw if it still does not after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

export function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}

/**
 * Timers Breakwater's request lifecycle created while `run` ran (Node's own per-socket and fetch timers are not
 * counted), and how many of them are still alive 50 ms after it finished.
 */
export async function breakwaterTimersDuring(run: () => Promise<unknown>): Promise<{ created: number; live: number }> {
  const live = new Set<number>()
  let created = 0
  const hook = createHook({
    init(asyncId, type) {
      if (type === 'Timeout' && new Error().stack?.includes('request-context')) {
        live.add(asyncId)
        created++
      }
    },
    destroy(asyncId) {
      live.delete(asyncId)
    },
  })
  hook.enable()
  try {
    await run()
    await new Promise((resolve) => setTimeout(resolve, 50))
  } finally {
    hook.disable()
  }
  return { created, live: live.size }
}

/** What `make` throws (undefined when it does not): for asserting on option errors. */
export function thrown(make: () => unknown): unknown {
  try {
    make()
  } catch (error) {
    return error
  }
  return undefined
}

/** A remote-like shared store (answers with promises) that counts its calls. */
export class SharedStore implements RateLimitStore {
  readonly inner = new MemoryRateLimitStore()
  consumes = 0
  refunds = 0
  consume(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    this.consumes++
    return Promise.resolve(this.inner.consume(key, rules, cost))
  }
  peek(key: string, rules: readonly ResolvedRule[], cost: number): Promise<RateLimitResult> {
    return Promise.resolve(this.inner.peek(key, rules, cost))
  }
  refund(key: string, rules: readonly ResolvedRule[], cost: number, ago: number): Promise<void> {
    this.refunds++
    this.inner.refund(key, rules, cost, ago)
    return Promise.resolve()
  }
  reset(key: string): void {
    this.inner.reset(key)
  }
}
