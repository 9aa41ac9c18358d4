// A monotonic millisecond clock: wall-clock jumps (NTP, manual changes) must not move limits.

import { performance } from 'node:perf_hooks'

/** Milliseconds on a monotonic clock. Only differences are meaningful. */
export type Clock = () => number

export const monotonicNow: Clock = () => performance.now()
