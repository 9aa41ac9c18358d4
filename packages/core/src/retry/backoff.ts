// How long to wait before a retry. Full jitter by default (AWS, "Exponential Backoff and Jitter"; gRPC's retry
// uses it too): spreading retries uniformly stops a fleet of clients from retrying in lockstep.

/** The backoff formulas of {@link RetryOptions.backoff}. */
export type BackoffKind = 'full-jitter' | 'decorrelated-jitter' | 'constant'

export const BACKOFF_KINDS: readonly BackoffKind[] = ['full-jitter', 'decorrelated-jitter', 'constant']

/**
 * @internal The delay before retry number `retry` (0 for the first retry), in ms.
 * - `full-jitter`: uniform in `[0, min(cap, base·2^retry))`.
 * - `decorrelated-jitter`: uniform in `[base, previous·3)`, at most `cap` (`previous` is the last delay, `base` at first).
 * - `constant`: `min(base, cap)`.
 */
export function backoffDelay(
  kind: BackoffKind,
  retry: number,
  previousMs: number,
  baseMs: number,
  capMs: number,
  random: () => number,
): number {
  if (kind === 'full-jitter') return random() * Math.min(capMs, baseMs * 2 ** retry)
  if (kind === 'decorrelated-jitter') {
    const previous = Math.max(previousMs, baseMs)
    return Math.min(capMs, baseMs + random() * (previous * 3 - baseMs))
  }
  return Math.min(baseMs, capMs)
}
