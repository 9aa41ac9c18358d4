// Test helpers: a plain RequestView and a hand-driven clock.

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

export function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
  }
}
