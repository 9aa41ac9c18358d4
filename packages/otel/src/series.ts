// Counts and last values kept in process and reported by the observable instruments at collection time, so a
// decision costs a few map lookups and an increment instead of an SDK call with attribute hashing.

import type { Attributes, ObservableResult } from '@opentelemetry/api'

/** The most series one metric keeps; later attribute sets are folded into one overflow series (OTel's convention). */
export const MAX_SERIES = 2000

const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ 'otel.metric.overflow': true })

/** One attribute set of a metric and its value. */
export interface Series {
  readonly attributes: Attributes
  value: number
}

type Level = Map<string, Level | Series>

/**
 * The series of one metric, found by up to six attribute values (unused ones `''`). Nested maps keyed by the
 * payload's own strings: no key is concatenated per decision, and a policy name or outcome constant hashes once.
 */
export class SeriesTable {
  readonly #root: Level = new Map()
  readonly #all: Series[] = []
  #overflow: Series | undefined = undefined
  #last: [string, string, string, string, string, string, Series] | undefined = undefined

  /** The series under these values, if it exists. Build attributes only when it does not: `find(…) ?? add(…)`. */
  find(a: string, b = '', c = '', d = '', e = '', f = ''): Series | undefined {
    // Steady traffic repeats one series (one policy, mostly one outcome): check the last one found first.
    const last = this.#last
    if (last !== undefined && a === last[0] && b === last[1] && c === last[2] && d === last[3] && e === last[4]) {
      if (f === last[5]) return last[6]
    }
    const series = (
      (
        (((this.#root.get(a) as Level | undefined)?.get(b) as Level | undefined)?.get(c) as Level | undefined)?.get(
          d,
        ) as Level | undefined
      )?.get(e) as Level | undefined
    )?.get(f) as Series | undefined
    if (series !== undefined) this.#last = [a, b, c, d, e, f, series]
    return series
  }

  /** A new series under these values (bounded by {@link MAX_SERIES}: past it, the overflow series). */
  add(attributes: Attributes, a: string, b = '', c = '', d = '', e = '', f = ''): Series {
    if (this.#all.length >= MAX_SERIES) return this.#overflowSeries()
    const series: Series = { attributes: Object.freeze(attributes), value: 0 }
    let level = this.#root
    for (const key of [a, b, c, d, e]) {
      let next = level.get(key) as Level | undefined
      if (next === undefined) {
        next = new Map()
        level.set(key, next)
      }
      level = next
    }
    level.set(f, series)
    this.#all.push(series)
    return series
  }

  /** Report every series (the observable instrument's callback). */
  readonly observe = (result: ObservableResult): void => {
    for (const series of this.#all) result.observe(series.value, series.attributes)
    if (this.#overflow !== undefined) result.observe(this.#overflow.value, this.#overflow.attributes)
  }

  #overflowSeries(): Series {
    if (this.#overflow === undefined) this.#overflow = { attributes: OVERFLOW_ATTRIBUTES, value: 0 }
    return this.#overflow
  }
}
