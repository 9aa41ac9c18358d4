// Client keys from IP addresses: IPv4-mapped IPv6 folds back to IPv4 (one client, one key), and IPv6 is
// grouped by subnet because one subscriber usually holds a whole /64.

import { createHash } from 'node:crypto'
import { isIPv6 } from 'node:net'

/** Longest client key kept verbatim; longer keys are replaced by a digest so memory stays bounded. */
export const MAX_KEY_LENGTH = 200

/**
 * The rate-limit key for a client IP: IPv4 unchanged, IPv4-mapped IPv6 (`::ffff:1.2.3.4`) folded to IPv4,
 * IPv6 masked to `subnet` bits (default 64) and written as `prefix/len`. Returns `undefined` for a missing
 * address; an unparseable one is returned as given (bounded by {@link boundKey}).
 *
 * @example
 * ipKey('::ffff:203.0.113.7') // '203.0.113.7'
 * ipKey('2001:db8:1:2:3:4:5:6') // '2001:db8:1:2::/64'
 */
export function ipKey(ip: string | undefined, subnet: number | false = 64): string | undefined {
  if (!ip) return undefined
  if (!ip.includes(':')) return boundKey(ip)
  const groups = parseIPv6(ip)
  if (groups === undefined) return boundKey(ip)
  // ::ffff:a.b.c.d — an IPv4 client seen through a dual-stack socket.
  if (
    groups[0] === 0 &&
    groups[1] === 0 &&
    groups[2] === 0 &&
    groups[3] === 0 &&
    groups[4] === 0 &&
    groups[5] === 0xffff
  ) {
    const hi = groups[6] as number
    const lo = groups[7] as number
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  if (subnet === false || subnet >= 128) return formatIPv6(groups)
  let bits = subnet
  for (let i = 0; i < 8; i++) {
    if (bits >= 16) bits -= 16
    else {
      groups[i] = bits === 0 ? 0 : (groups[i] as number) & (0xffff << (16 - bits)) & 0xffff
      bits = 0
    }
  }
  return `${formatIPv6(groups)}/${subnet}`
}

/** Replace keys longer than {@link MAX_KEY_LENGTH} by a SHA-256 digest (`sha256:…`). */
export function boundKey(key: string): string {
  return key.length <= MAX_KEY_LENGTH ? key : `sha256:${hashKey(key, 32)}`
}

/** A base64url SHA-256 digest of `key`, truncated to `length` characters. Never reveals the key. */
export function hashKey(key: string, length = 16): string {
  return createHash('sha256').update(key).digest('base64url').slice(0, length)
}

function parseIPv6(input: string): number[] | undefined {
  let ip = input
  const zone = ip.indexOf('%')
  if (zone !== -1) ip = ip.slice(0, zone)
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1)
  if (!isIPv6(ip)) return undefined
  const groups: number[] = []
  const [head = '', tail] = ip.split('::') as [string, string | undefined]
  const parse = (part: string): number[] => {
    if (part === '') return []
    const out: number[] = []
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number)
        out.push((a << 8) | b, (c << 8) | d)
      } else out.push(Number.parseInt(piece, 16))
    }
    return out
  }
  const left = parse(head)
  const right = tail === undefined ? [] : parse(tail)
  groups.push(...left)
  for (let i = left.length + right.length; i < 8; i++) groups.push(0)
  groups.push(...right)
  return groups.length === 8 ? groups : undefined
}

function formatIPv6(groups: number[]): string {
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let bestStart = -1
  let bestLength = 0
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLength && j - i > 1) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (bestStart === -1) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`
}
