// Test helpers: a plain RequestView, a hand-driven clock, and a count of the request lifecycle's timers.

import { createHook } from 'node:async_hooks'

import type { RequestView } from '../src/index.js'

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
