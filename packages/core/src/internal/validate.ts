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

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  seconds: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
}

/** A duration in milliseconds: a number of ms, or a string such as `"500ms"`, `"10s"`, `"1 minute"`, `"1h"`, `"1d"`. */
export type Duration = number | string

export function duration(option: string, value: unknown): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) return value
  } else if (typeof value === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]+)?\s*$/i.exec(value)
    if (match) {
      const unit = UNITS[(match[2] ?? 'ms').toLowerCase()]
      const ms = Number(match[1]) * (unit ?? Number.NaN)
      if (Number.isFinite(ms) && ms > 0) return ms
    }
  }
  throw new InvalidOptionError(option, value, 'a positive duration in ms or a string like "10s", "1m", "1h"')
}

export function nonNegativeInteger(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(option, value, 'an integer ≥ 0')
  }
  return value
}

/** An options object whose every key is one of `known`: a misspelt option is an error naming it. */
export function knownOptions<T extends object>(options: T, known: ReadonlySet<string>): T {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('options', options, 'an object')
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new InvalidOptionError(key, (options as Record<string, unknown>)[key], 'a known option')
  }
  return options
}

/** A policy's name as events and errors show it: 1 to 64 characters. */
export function policyName(option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 64) {
    throw new InvalidOptionError(option, value, 'a non-empty string of at most 64 characters')
  }
  return value
}
