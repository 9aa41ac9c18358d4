import { describe, expect, it } from 'vitest'
import { boundKey, ipKey, MAX_KEY_LENGTH } from '../src/index.js'

describe('ipKey', () => {
  it('keeps IPv4 as is and folds IPv4-mapped IPv6 back to IPv4', () => {
    expect(ipKey('203.0.113.7')).toBe('203.0.113.7')
    expect(ipKey('::ffff:203.0.113.7')).toBe('203.0.113.7')
    expect(ipKey('::FFFF:203.0.113.7')).toBe('203.0.113.7')
    expect(ipKey('::ffff:cb00:7107')).toBe('203.0.113.7')
    expect(ipKey('0:0:0:0:0:ffff:cb00:7107')).toBe('203.0.113.7')
  })

  it('groups IPv6 by /64 by default, so one subscriber cannot rotate addresses', () => {
    expect(ipKey('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64')
    expect(ipKey('2001:db8:1:2:ffff::1')).toBe('2001:db8:1:2::/64')
    expect(ipKey('2001:db8:1:3::1')).toBe('2001:db8:1:3::/64')
    expect(ipKey('2001:DB8:1:2::9')).toBe('2001:db8:1:2::/64')
  })

  it('honours other subnet sizes and whole addresses', () => {
    expect(ipKey('2001:db8:1:2ff:3:4:5:6', 56)).toBe('2001:db8:1:200::/56')
    expect(ipKey('2001:db8::1', 128)).toBe('2001:db8::1')
    expect(ipKey('2001:0db8:0000:0000:0000:0000:0000:0001', false)).toBe('2001:db8::1')
  })

  it('strips zone ids and brackets', () => {
    expect(ipKey('fe80::1%eth0')).toBe('fe80::/64')
    expect(ipKey('[2001:db8::1]')).toBe('2001:db8::/64')
  })

  it('never throws on malformed input and bounds its length', () => {
    for (const bad of ['', ':::', 'not-an-ip', '1.2.3.4.5', 'gggg::1', `${'a:'.repeat(500)}`]) {
      expect(() => ipKey(bad)).not.toThrow()
      expect((ipKey(bad) ?? '').length).toBeLessThanOrEqual(MAX_KEY_LENGTH)
    }
    expect(ipKey(undefined)).toBeUndefined()
  })
})

describe('boundKey', () => {
  it('replaces over-long keys by a digest', () => {
    const long = 'x'.repeat(10_000)
    expect(boundKey(long)).toMatch(/^sha256:[\w-]{32}$/)
    expect(boundKey(long)).toBe(boundKey(long))
    expect(boundKey('short')).toBe('short')
  })
})
