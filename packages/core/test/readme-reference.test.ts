// The core README's two reference tables say what the code says: one row per error code with the status and
// problem type of its PROBLEMS entry, and one row per diagnostics_channel channel core publishes.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { channels, ErrorCode, PROBLEMS } from '../src/index.js'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

/** The cells of every table row under `heading`, up to the next `## ` heading, keyed by the first cell's code span. */
function table(heading: string): Map<string, string[]> {
  const start = readme.indexOf(`\n${heading}\n`)
  expect(start, `${heading} in packages/core/README.md`).toBeGreaterThan(-1)
  const end = readme.indexOf('\n## ', start + 1)
  const rows = new Map<string, string[]>()
  for (const line of readme.slice(start, end === -1 ? undefined : end).split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim())
    const key = /^`([^`]+)`$/.exec(cells[1] ?? '')?.[1]
    if (line.startsWith('|') && key !== undefined) rows.set(key, cells.slice(2))
  }
  return rows
}

describe('packages/core/README.md', () => {
  it("has one row per error code under “Every error code”, with its registry's status and type", () => {
    const rows = table('## Every error code')
    const codes = Object.values(ErrorCode)
    expect([...rows.keys()].sort()).toEqual([...codes].sort())
    for (const code of codes) {
      const { status, type } = PROBLEMS[code]
      const [readmeStatus, readmeType] = rows.get(code) ?? []
      expect(readmeStatus, code).toBe(status === undefined ? '—' : String(status))
      expect(readmeType, code).toBe(status === undefined ? '—' : `\`${type.replace(/^.*#/, '')}\``)
    }
  })

  it('has one row per channel under “Every diagnostics_channel channel”', () => {
    const rows = table('## Every `diagnostics_channel` channel')
    const names = Object.values(channels).map((channel) => String(channel.name))
    expect([...rows.keys()].sort()).toEqual(names.sort())
  })
})
