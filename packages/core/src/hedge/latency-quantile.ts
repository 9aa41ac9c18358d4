// Recent latencies in fixed memory: a log-scale histogram (buckets 20 % wide from 0.1 ms to about 3 min) in two
// generations, so the estimate follows the dependency as it changes instead of averaging over its whole life.

const BUCKETS = 80
const SMALLEST_MS = 0.1
const GROWTH = 1.2
const LOG_GROWTH = Math.log(GROWTH)

/** @internal A streaming latency quantile: O(1) to record, 80 buckets to read, 2 × 80 numbers of memory. */
export class LatencyQuantile {
  readonly #current = new Float64Array(BUCKETS)
  readonly #previous = new Float64Array(BUCKETS)
  readonly #generationSize: number
  #currentCount = 0
  #previousCount = 0
  #cached = Number.NaN
  #sinceCache = 0

  /** `generationSize`: samples per generation; the estimate covers the last one to two generations. */
  constructor(
    readonly quantile: number,
    generationSize = 1000,
  ) {
    this.#generationSize = generationSize
  }

  /** Samples the estimate is made from now. */
  get count(): number {
    return this.#currentCount + this.#previousCount
  }

  record(ms: number): void {
    if (this.#currentCount >= this.#generationSize) {
      this.#previous.set(this.#current)
      this.#previousCount = this.#currentCount
      this.#current.fill(0)
      this.#currentCount = 0
    }
    const index = ms <= SMALLEST_MS ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / SMALLEST_MS) / LOG_GROWTH))
    ;(this.#current[index] as number)++
    this.#currentCount++
    this.#sinceCache++
  }

  /** The quantile's estimate in ms: the upper edge of its bucket (at most 20 % high); `NaN` with no samples. */
  value(): number {
    // Recomputed every 16 samples: a hedge delay does not need to move with every call.
    if (this.#sinceCache < 16 && !Number.isNaN(this.#cached)) return this.#cached
    this.#sinceCache = 0
    const total = this.count
    if (total === 0) return Number.NaN
    const rank = this.quantile * total
    let seen = 0
    for (let i = 0; i < BUCKETS; i++) {
      seen += (this.#current[i] as number) + (this.#previous[i] as number)
      if (seen >= rank) {
        this.#cached = SMALLEST_MS * GROWTH ** i
        return this.#cached
      }
    }
    this.#cached = SMALLEST_MS * GROWTH ** (BUCKETS - 1)
    return this.#cached
  }
}
