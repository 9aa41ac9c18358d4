// Response headers for rate-limit state in each format clients meet in the wild. The policy header is built
// once per limiter when its limits are static, so the hot path only formats the changing numbers.

import type { RateLimitResult, ResolvedRule } from './types.js'

/**
 * - `draft-8`: `RateLimit` + `RateLimit-Policy` as Structured-Field lists, one item per rule (IETF
 *   draft-ietf-httpapi-ratelimit-headers-08 through -10, the current format).
 * - `draft-7`: `RateLimit: limit=…, remaining=…, reset=…` for the tightest rule + `RateLimit-Policy: q;w=…`.
 * - `draft-6`: `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds) + `RateLimit-Policy`.
 * - `legacy`: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix epoch seconds).
 */
export type HeaderFormat = 'draft-8' | 'draft-7' | 'draft-6' | 'legacy'

export const HEADER_FORMATS: readonly HeaderFormat[] = ['draft-8', 'draft-7', 'draft-6', 'legacy']

type Pair = readonly [string, string]

/** Whole seconds, rounded up, but not for float noise: `(now + 30000) − now` can be 30000.000000004 ms. */
const seconds = (ms: number): number => (ms <= 0 ? 0 : Math.ceil(ms / 1000 - 1e-9))
const windowSeconds = (rule: ResolvedRule): number => Math.max(1, Math.ceil(rule.windowMs / 1000))

/** Writes the headers of one limiter; build once, call per request. */
export class RateLimitHeaders {
  readonly #formats: readonly HeaderFormat[]
  #staticRules: readonly ResolvedRule[] | undefined
  #policy8: string | undefined
  /** `['RateLimit-Policy', policy8]`, shared by every response (header pairs are never modified). */
  #policyPair8: Pair | undefined
  /**
   * `"<name>";r=` when the only format is draft-8 and there is one static rule: an allowed request's headers are
   * then one short concatenation and the shared policy pair.
   */
  #single8: string | undefined
  #policy7: string | undefined

  constructor(formats: readonly HeaderFormat[], staticRules: readonly ResolvedRule[] | undefined) {
    this.#formats = formats
    this.#staticRules = staticRules
    if (staticRules) {
      this.#policy8 = policy8(staticRules, undefined)
      this.#policyPair8 = ['RateLimit-Policy', this.#policy8]
      const only = staticRules[0]
      if (formats.length === 1 && formats[0] === 'draft-8' && staticRules.length === 1 && only !== undefined) {
        this.#single8 = `"${only.name}";r=`
      }
      this.#policy7 = policy7(staticRules)
    }
  }

  /** Headers for `result`; `partitionKey` is an already-hashed sf byte sequence body, or undefined. */
  write(rules: readonly ResolvedRule[], result: RateLimitResult, partitionKey: string | undefined): Pair[] {
    const single = this.#single8
    if (single !== undefined && result.allowed && rules === this.#staticRules && partitionKey === undefined) {
      const r = result.rules[0]
      if (r !== undefined) {
        return [['RateLimit', `${single}${r.remaining};t=${seconds(r.resetMs)}`], this.#policyPair8 as Pair]
      }
    }
    const out: Pair[] = []
    const isStatic = rules === this.#staticRules
    for (const format of this.#formats) {
      switch (format) {
        case 'draft-8': {
          let limits = ''
          for (let i = 0; i < rules.length; i++) {
            const r = result.rules[i]
            if (r === undefined) continue
            if (i > 0) limits += ', '
            limits += `"${(rules[i] as ResolvedRule).name}";r=${r.remaining};t=${seconds(r.resetMs)}`
          }
          out.push(['RateLimit', limits])
          out.push(
            isStatic && partitionKey === undefined
              ? (this.#policyPair8 as Pair)
              : ['RateLimit-Policy', policy8(rules, partitionKey)],
          )
          break
        }
        case 'draft-7': {
          const i = tightest(result)
          const rule = rules[i] as ResolvedRule
          const r = result.rules[i]
          out.push([
            'RateLimit',
            `limit=${rule.limit}, remaining=${r?.remaining ?? 0}, reset=${seconds(r?.resetMs ?? 0)}`,
          ])
          out.push(['RateLimit-Policy', isStatic ? (this.#policy7 as string) : policy7(rules)])
          break
        }
        case 'draft-6': {
          const i = tightest(result)
          const r = result.rules[i]
          out.push(['RateLimit-Policy', isStatic ? (this.#policy7 as string) : policy7(rules)])
          out.push(['RateLimit-Limit', String((rules[i] as ResolvedRule).limit)])
          out.push(['RateLimit-Remaining', String(r?.remaining ?? 0)])
          out.push(['RateLimit-Reset', String(seconds(r?.resetMs ?? 0))])
          break
        }
        case 'legacy': {
          const i = tightest(result)
          const r = result.rules[i]
          out.push(['X-RateLimit-Limit', String((rules[i] as ResolvedRule).limit)])
          out.push(['X-RateLimit-Remaining', String(r?.remaining ?? 0)])
          out.push(['X-RateLimit-Reset', String(Math.ceil((Date.now() + (r?.resetMs ?? 0)) / 1000))])
          break
        }
      }
    }
    if (!result.allowed) out.push(['Retry-After', String(Math.max(1, seconds(result.retryAfterMs)))])
    return out
  }
}

/** Index of the rule that matters most to the client: a denying rule, else the one with least remaining. */
function tightest(result: RateLimitResult): number {
  let best = 0
  for (let i = 1; i < result.rules.length; i++) {
    const a = result.rules[i] as RateLimitResult['rules'][number]
    const b = result.rules[best] as RateLimitResult['rules'][number]
    if ((!a.allowed && b.allowed) || (a.allowed === b.allowed && a.remaining < b.remaining)) best = i
  }
  return best
}

function policy8(rules: readonly ResolvedRule[], partitionKey: string | undefined): string {
  let out = ''
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as ResolvedRule
    if (i > 0) out += ', '
    out += `"${rule.name}";q=${rule.limit};w=${windowSeconds(rule)}`
    if (partitionKey !== undefined) out += `;pk=:${partitionKey}:`
  }
  return out
}

function policy7(rules: readonly ResolvedRule[]): string {
  return rules.map((rule) => `${rule.limit};w=${windowSeconds(rule)}`).join(', ')
}
