// The overload experiment's chart: goodput and p99 of accepted requests against offered load, one line per
// variant, as a self-contained SVG (no dependencies, so it renders on GitHub as is).

const COLORS = {
  none: '#c0392b',
  'under-pressure': '#8e44ad',
  'breakwater-static': '#2980b9',
  'breakwater-adaptive': '#27ae60',
}

/**
 * @param {{ variant: string, label: string, load: number, goodput: number, p99: number }[]} rows
 * @param {{ capacity: number, unloadedP99: number, loads: number[] }} context
 */
export function renderChart(rows, { capacity, unloadedP99, loads }) {
  const width = 900
  const height = 360
  const panel = { width: 360, height: 240, top: 50 }
  const lefts = [70, 520]
  const variants = [...new Set(rows.map((row) => row.variant))]
  const maxLoad = Math.max(...loads)
  const x = (left, load) => left + ((load - Math.min(...loads)) / (maxLoad - Math.min(...loads) || 1)) * panel.width
  const goodMax = capacity * 1.2
  const p99Max = Math.max(3 * unloadedP99 * 1.5, ...rows.map((row) => (Number.isFinite(row.p99) ? row.p99 : 0)))
  // p99 on a log scale: the unprotected server is orders of magnitude slower than the protected ones.
  const logMin = Math.log10(Math.max(1, unloadedP99 / 2))
  const logMax = Math.log10(p99Max)
  const yGood = (value) => panel.top + panel.height - (Math.min(value, goodMax) / goodMax) * panel.height
  const yP99 = (value) =>
    panel.top + panel.height - ((Math.log10(Math.max(value, 10 ** logMin)) - logMin) / (logMax - logMin)) * panel.height
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    '<title>Overload experiment: goodput and p99 of accepted requests against offered load, per protection</title>',
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${lefts[0]}" y="24" font-size="14" font-weight="bold">Goodput (req/s) — capacity ${capacity}</text>`,
    `<text x="${lefts[1]}" y="24" font-size="14" font-weight="bold">p99 of accepted requests (ms, log scale)</text>`,
  ]
  for (const left of lefts) {
    out.push(
      `<rect x="${left}" y="${panel.top}" width="${panel.width}" height="${panel.height}" fill="none" stroke="#999"/>`,
    )
    for (const load of loads) {
      out.push(
        `<text x="${x(left, load)}" y="${panel.top + panel.height + 16}" text-anchor="middle">${load}× capacity</text>`,
      )
    }
  }
  for (const value of [0, capacity / 2, capacity]) {
    out.push(`<text x="${lefts[0] - 6}" y="${yGood(value) + 4}" text-anchor="end">${value}</text>`)
  }
  out.push(
    `<line x1="${lefts[0]}" x2="${lefts[0] + panel.width}" y1="${yGood(0.9 * capacity)}" y2="${yGood(0.9 * capacity)}" stroke="#555" stroke-dasharray="4 4"/>`,
    `<text x="${lefts[0] + panel.width - 4}" y="${yGood(0.9 * capacity) - 4}" text-anchor="end" fill="#555">0.9 × capacity</text>`,
  )
  for (let exponent = Math.ceil(logMin); exponent <= logMax; exponent++) {
    out.push(`<text x="${lefts[1] - 6}" y="${yP99(10 ** exponent) + 4}" text-anchor="end">${10 ** exponent}</text>`)
  }
  out.push(
    `<line x1="${lefts[1]}" x2="${lefts[1] + panel.width}" y1="${yP99(3 * unloadedP99)}" y2="${yP99(3 * unloadedP99)}" stroke="#555" stroke-dasharray="4 4"/>`,
    `<text x="${lefts[1] + panel.width - 4}" y="${yP99(3 * unloadedP99) - 4}" text-anchor="end" fill="#555">3 × unloaded p99</text>`,
  )
  variants.forEach((variant, index) => {
    const own = rows.filter((row) => row.variant === variant)
    const color = COLORS[variant] ?? '#333'
    const path = (left, y, field) =>
      own
        .filter((row) => Number.isFinite(row[field]))
        .map((row, i) => `${i === 0 ? 'M' : 'L'}${x(left, row.load).toFixed(1)},${y(row[field]).toFixed(1)}`)
        .join(' ')
    out.push(`<path d="${path(lefts[0], yGood, 'goodput')}" fill="none" stroke="${color}" stroke-width="2.5"/>`)
    out.push(`<path d="${path(lefts[1], yP99, 'p99')}" fill="none" stroke="${color}" stroke-width="2.5"/>`)
    for (const row of own) {
      out.push(`<circle cx="${x(lefts[0], row.load)}" cy="${yGood(row.goodput)}" r="3.5" fill="${color}"/>`)
      if (Number.isFinite(row.p99)) {
        out.push(`<circle cx="${x(lefts[1], row.load)}" cy="${yP99(row.p99)}" r="3.5" fill="${color}"/>`)
      }
    }
    const legendX = 70 + index * 210
    out.push(
      `<rect x="${legendX}" y="${height - 28}" width="14" height="4" fill="${color}"/>`,
      `<text x="${legendX + 20}" y="${height - 22}">${escapeXml(own[0]?.label ?? variant)}</text>`,
    )
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function escapeXml(text) {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;')
}
