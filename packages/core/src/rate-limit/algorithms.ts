// The three algorithms as pure arithmetic on a three-number state, shared by every in-process store.
// The Redis store's Lua performs exactly the same steps; the store conformance suite holds them together.
//
// State slots per rule (all numbers, ms on the store's clock):
//   gcra            [tat, 0, 0]                      theoretical arrival time
//   fixed-window    [windowEnd, count, 0]
//   sliding-window  [windowIndex, current, previous]

import type { ResolvedRule } from './types.js'

/** Slack for floating-point comparisons of ms values. */
const EPSILON = 1e-6

/** Output of one rule's evaluation; `next*` is the state to write if the whole decision is allowed. */
export interface Evaluation {
  allowed: boolean
  remaining: number
  resetMs: number
  next0: number
  next1: number
  next2: number
  /** Clock value after which the new state is indistinguishable from an empty one. */
  expiresAt: number
}

/** Evaluate `rule` for `cost` units at `now`, from state `s0, s1, s2` (all 0 for a new key). Writes into `out`. */
export function evaluate(
  rule: ResolvedRule,
  s0: number,
  s1: number,
  s2: number,
  now: number,
  cost: number,
  out: Evaluation,
): Evaluation {
  switch (rule.algorithm) {
    case 'gcra':
      return gcra(rule, s0, now, cost, out)
    case 'fixed-window':
      return fixedWindow(rule, s0, s1, now, cost, out)
    default:
      return slidingWindow(rule, s0, s1, s2, now, cost, out)
  }
}

function gcra(rule: ResolvedRule, tat: number, now: number, cost: number, out: Evaluation): Evaluation {
  const interval = rule.windowMs / rule.limit
  // τ + T: the whole burst fits in one instant.
  const tolerance = interval * rule.burst
  const base = Math.max(tat, now)
  const newTat = base + interval * cost
  const ahead = newTat - now
  if (ahead <= tolerance + EPSILON) {
    out.allowed = true
    out.remaining = Math.max(0, Math.floor((tolerance - ahead) / interval + EPSILON))
    out.resetMs = ahead
    out.next0 = newTat
    out.expiresAt = newTat
  } else {
    out.allowed = false
    out.remaining = Math.max(0, Math.floor((tolerance - (base - now)) / interval + EPSILON))
    out.resetMs = ahead - tolerance
    out.next0 = tat
    out.expiresAt = tat
  }
  out.next1 = 0
  out.next2 = 0
  return out
}

function fixedWindow(
  rule: ResolvedRule,
  windowEnd: number,
  count: number,
  now: number,
  cost: number,
  out: Evaluation,
): Evaluation {
  if (now >= windowEnd) {
    windowEnd = now + rule.windowMs
    count = 0
  }
  const left = windowEnd - now
  if (count + cost <= rule.limit) {
    out.allowed = true
    out.remaining = rule.limit - count - cost
    out.next1 = count + cost
  } else {
    out.allowed = false
    out.remaining = Math.max(0, rule.limit - count)
    out.next1 = count
  }
  out.resetMs = left
  out.next0 = windowEnd
  out.next2 = 0
  out.expiresAt = windowEnd
  return out
}

function slidingWindow(
  rule: ResolvedRule,
  index: number,
  current: number,
  previous: number,
  now: number,
  cost: number,
  out: Evaluation,
): Evaluation {
  const window = rule.windowMs
  const nowIndex = Math.floor(now / window)
  if (index !== nowIndex) {
    previous = index === nowIndex - 1 ? current : 0
    current = 0
  }
  const start = nowIndex * window
  const elapsed = now - start
  const estimate = previous * (1 - elapsed / window) + current
  if (estimate + cost <= rule.limit + EPSILON) {
    const charged = current + cost
    out.allowed = true
    out.remaining = Math.max(0, Math.floor(rule.limit - estimate - cost + EPSILON))
    // Fully available again once both counted windows have slid past.
    out.resetMs = charged > 0 ? start + 2 * window - now : previous > 0 ? start + window - now : 0
    out.next1 = charged
  } else {
    out.allowed = false
    out.remaining = Math.max(0, Math.floor(rule.limit - estimate + EPSILON))
    out.resetMs = slidingRetryAfter(rule.limit, window, elapsed, current, previous, cost)
    out.next1 = current
  }
  out.next0 = nowIndex
  out.next2 = previous
  out.expiresAt = start + 2 * window
  return out
}

/** Earliest ms from now at which `cost` more units fit under the sliding estimate. */
function slidingRetryAfter(
  limit: number,
  window: number,
  elapsed: number,
  current: number,
  previous: number,
  cost: number,
): number {
  if (cost > limit) return 2 * window
  const excess = previous * (1 - elapsed / window) + current + cost - limit
  // Still inside this window: the previous window's weight decays linearly.
  if (previous > 0) {
    const wait = (excess * window) / previous
    if (wait <= window - elapsed) return Math.max(1, Math.ceil(wait))
  }
  // After the roll-over the current count becomes the decaying previous one.
  const untilRoll = window - elapsed
  if (current + cost <= limit) return Math.max(1, Math.ceil(untilRoll))
  return Math.ceil(untilRoll + window * (1 - (limit - cost) / current))
}

/**
 * Give back `cost` units charged `chargedMsAgo` ago, from state `s0, s1, s2` at `now`; writes the new state into
 * `out.next*` and its expiry into `out.expiresAt` (only those fields). Never below an empty state, and never
 * into a window the charge was not counted in: `chargedMsAgo` is measured from before the charge was sent, so
 * the charge looks older than it was, and a charge near a window boundary is refunded less, never more.
 */
export function refund(
  rule: ResolvedRule,
  s0: number,
  s1: number,
  s2: number,
  now: number,
  cost: number,
  chargedMsAgo: number,
  out: Evaluation,
): Evaluation {
  out.next0 = s0
  out.next1 = s1
  out.next2 = s2
  switch (rule.algorithm) {
    case 'gcra': {
      // Units are interchangeable in a bucket: move the arrival time back, but never before now (a full bucket).
      const tat = Math.max(now, s0 - (rule.windowMs / rule.limit) * cost)
      out.next0 = tat
      out.expiresAt = tat
      return out
    }
    case 'fixed-window': {
      const windowEnd = s0
      // The window began no later than the charge: its start is `left - windowMs` ms from now, the charge's -ago.
      const left = windowEnd - now
      if (left > 0 && left - rule.windowMs <= EPSILON - chargedMsAgo) out.next1 = Math.max(0, s1 - cost)
      out.expiresAt = windowEnd
      return out
    }
    default: {
      const window = rule.windowMs
      const chargedIndex = Math.floor((now - chargedMsAgo) / window)
      // Slot 1 counts window `s0`, slot 2 the one before it.
      if (chargedIndex === s0) out.next1 = Math.max(0, s1 - cost)
      else if (chargedIndex === s0 - 1) out.next2 = Math.max(0, s2 - cost)
      out.expiresAt = (s0 + 2) * window
      return out
    }
  }
}
