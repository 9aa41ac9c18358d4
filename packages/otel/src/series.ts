// Counts and last values kept in process and reported by the observable instruments at collection time, so a
// decision costs a map lookup and an increment instead of an SDK call with attribute hashing.

import type { Attributes, ObservableResult } from '@opentelemetry/api'

/** The most series one metric keeps; later attribute sets are folded into one overflow series (OTel's convention). */
export const MAX_SERIES = 2000

const OVERFLOW_KEY = '\u0000overflow'
const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ 'otel.metric.overflow': true })

/** One attribute set of a metric and its value. */
export interface Series {
  readonly attributes: Attributes
  value: number
}

/** The series of one metric, keyed by a string made of its attribute values. */
export class SeriesTable {
  readonly #series = new Map<string, Series>()

  /** The series under `key`, if it exists. Callers build attributes only when it does not: `find(k) ?? add(k, {…})`. */
  find(key: string): Series | undefined {
    return this.#series.get(key)
  }

  /** A new series under `key` (bounded by {@link MAX_SERIES}: past it, the overflow series). */
  add(key: string, attributes: Attributes): Series {
    if (this.#series.size >= MAX_SERIES) return this.#overflow()
    const series: Series = { attributes: Object.freeze(attributes), value: 0 }
    this.#series.set(key, series)
    return series
  }

  /** Every series whose attributes satisfy `match` (the circuit-breaker state gauge resets a policy's states). */
  *where(match: (attributes: Attributes) => boolean): Iterable<Series> {
    for (const series of this.#series.values()) if (match(series.attributes)) yield series
  }

  /** Report every series (the observable instrument's callback). */
  readonly observe = (result: ObservableResult): void => {
    for (const series of this.#series.values()) result.observe(series.value, series.attributes)
  }

  #overflow(): Series {
    let series = this.#series.get(OVERFLOW_KEY)
    if (series === undefined) {
      series = { attributes: OVERFLOW_ATTRIBUTES, value: 0 }
      this.#series.set(OVERFLOW_KEY, series)
    }
    return series
  }
}
