// Where an answer came from: the policies that can substitute one (fallback, stale-if-error, a dependency with
// them) answer `run()` with the value and its source, so a caller can say "stale, 12 s old" instead of guessing.

/**
 * An answer and where it came from. `source` is `upstream` when the work itself produced it, `fallback` for a
 * fallback value, `stale` for a stored earlier result.
 *
 * @example
 * const served = await stale.run(loadStock, { signal, cacheKey: sku })
 * if (served.source === 'stale') res.setHeader('Age', Math.floor(served.ageMs / 1000))
 */
export interface Served<T> {
  value: T
  source: 'upstream' | 'fallback' | 'stale'
  /** How old the answer is in ms: 0 for `upstream` and `fallback`, the stored result's age for `stale`. */
  ageMs: number
  /** What failed, when the answer is a fallback or a stale one. */
  error?: unknown
}

/** @internal A value the work produced, as a {@link Served}. */
export function servedUpstream<T>(value: T): Served<T> {
  return { value, source: 'upstream', ageMs: 0 }
}

/** @internal The layer below a serving policy: it answers with a {@link Served} or rejects with what failed. */
export type ServeNext<T> = () => Promise<Served<T>>

/** @internal The value of a {@link Served}: what `execute` answers where `run` answers the whole. */
export function servedValue<T>(served: Served<T>): T {
  return served.value
}
