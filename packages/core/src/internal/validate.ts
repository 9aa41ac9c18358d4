// Option checks run once at construction; each error names the option and the bad value.

import { InvalidOptionError } from '../errors.js'

export function positiveInteger(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOptionError(option, value, 'a positive integer')
  }
  return value
}

export function nonNegativeNumber(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'a finite number ≥ 0')
  }
  return value
}

export function oneOf<T extends string>(option: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw new InvalidOptionError(option, value, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`)
  }
  return value as T
}

export function optionalFunction<F>(option: string, value: unknown): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new InvalidOptionError(option, value, 'a function')
  return value as F
}

/** The one duration grammar: a number and one of these units, nothing else (`"500ms"`, `"10s"`, `"1.5h"`). */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
/** Spellings of other grammars ("10 mins", "2 hours", "500"), mapped to the unit to suggest instead. */
const OTHER_SPELLINGS =
  /^\s*(\d+(?:\.\d+)?)\s*(milliseconds?|msecs?|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?|)\s*$/i

/**
 * A duration in milliseconds: a number of ms, or a string of a number and one unit — `ms`, `s`, `m`, `h` or
 * `d` — without spaces: `"500ms"`, `"10s"`, `"1m"`, `"1.5h"`, `"1d"`. Other spellings (`"10 mins"`,
 * `"2 hours"`, a bare `"500"`) are rejected with the equivalent to write instead.
 */
export type Duration = number | string

export function duration(option: string, value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) return value
  } else if (typeof value === 'string') {
    const match = DURATION.exec(value)
    if (match) {
      const ms = Number(match[1]) * (UNITS[match[2] as string] as number)
      if (Number.isFinite(ms) && ms > 0) return ms
    }
  }
  throw new InvalidOptionError(
    option,
    value,
    `a positive duration: a number of ms, or a number and one unit of ms, s, m, h, d such as "500ms", "10s", "1m", "1h"${suggestDuration(value)}`,
  )
}

/** `(write "10m")` for a duration spelled in another grammar, else nothing. */
function suggestDuration(value: unknown): string {
  if (typeof value !== 'string') return ''
  const match = OTHER_SPELLINGS.exec(value)
  if (!match) return ''
  const word = (match[2] ?? '').toLowerCase()
  // "ms…", "mil…" and a bare number are milliseconds, "mi…" minutes; the other units are their first letter.
  const unit = word === '' || /^(ms|mil)/.test(word) ? 'ms' : word.startsWith('mi') ? 'm' : word[0]
  return ` (write "${match[1]}${unit}")`
}

/** The keys of `T` that `K` leaves out: `never` when the list is complete. */
type Missing<T, K extends readonly string[]> = Exclude<keyof T & string, K[number]>

/**
 * Declare the option names a factory accepts. The list is checked against the options type at compile time: a
 * name the type lacks, or a name of the type left out, is a type error that names it. Adding an option to a
 * factory is one line in its list.
 *
 * @example
 * const KNOWN = optionKeys<TimeoutOptions>()(['timeoutMs', 'header'])
 * knownOptions('timeout', options, KNOWN)
 */
export function optionKeys<T>() {
  return <const K extends readonly (keyof T & string)[]>(
    keys: K & ([Missing<T, K>] extends [never] ? unknown : { missingOptionKeys: Missing<T, K> }),
  ): ReadonlySet<string> => new Set<string>(keys)
}

/**
 * Throw {@link InvalidOptionError} for the first own key of `options` that `known` lacks, naming it and the
 * closest known name (a mistyped `limt` is reported as `limt`, not as a missing `limit`). For store authors too.
 *
 * @example
 * const OPTIONS = optionKeys<MyStoreOptions>()(['client', 'prefix'])
 * knownOptions('MyStore', options, OPTIONS)
 * // Unknown option "prefx" of MyStore (did you mean "prefix"?); known options: client, prefix
 */
export function knownOptions(what: string, options: object, known: ReadonlySet<string>): void {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  for (const key of Object.keys(options)) {
    if (known.has(key)) continue
    const suggestion = closest(key, known)
    const error = new InvalidOptionError(key, (options as Record<string, unknown>)[key], 'a known option')
    error.message =
      `Unknown option "${key}" of ${what}${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}; ` +
      `known options: ${[...known].join(', ')}`
    throw error
  }
}

/** The known name nearest to `key` by edit distance (case-insensitive), if it is near enough to be a typo. */
function closest(key: string, known: ReadonlySet<string>): string | undefined {
  const lower = key.toLowerCase()
  let best: string | undefined
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1
  for (const name of known) {
    const distance = editDistance(lower, name.toLowerCase())
    if (distance < bestDistance) {
      best = name
      bestDistance = distance
    }
  }
  return best
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1)
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution)
    }
    previous = current
  }
  return previous[b.length] ?? 0
}

export function nonNegativeInteger(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'an integer ≥ 0')
  }
  return value
}

/** A policy's name as events and errors show it: 1 to 64 characters. */
export function policyName(option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 64) {
    throw new InvalidOptionError(option, value, 'a non-empty string of at most 64 characters')
  }
  return value
}
