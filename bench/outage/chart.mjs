// The outage experiment's chart: one timeline per measure, a line per variant, the four phases shaded and the
// Breakwater alerts marked where they fired — a self-contained SVG (no dependencies; renders on GitHub as is).

const COLORS = { none: '#c0392b', cockatiel: '#8e44ad', opossum: '#d35400', breakwater: '#27ae60' }
const PHASE_FILL = { healthy: '#ffffff', degrading: '#fff6d5', saturated: '#fde0dc', fixed: '#e3f4e8' }
const STATE_FILL = { closed: '#cfe8d6', 'half-open': '#f5d76e', open: '#c0392b', none: '#eeeeee' }

/** @param {any} result what analyse() returns */
export function renderChart(result) {
  const left = 90
  const plotWidth = 860
  const width = left + plotWidth + 30
  const panelHeight = 100
  const gap = 34
  const x = (t) => left + (t / result.total) * plotWidth
  const variants = result.variants
  const panels = [
    {
      title: 'Goodput: 2xx answers per second, all routes (stale and fallback answers included)',
      value: (row) => row.goodput,
    },
    { title: '5xx, timed-out and failed answers per second, all routes', value: (row) => row.failed },
    { title: 'Read route (inventory): p99 of 2xx answers, ms (p50 dashed; log scale)', route: 'inventory' },
    {
      title: 'Healthy route (recommendations): p99 of 2xx answers, ms (p50 dashed; log scale)',
      route: 'recommendations',
    },
    { title: 'Idempotent POST (orders): p99 of 2xx answers, ms (p50 dashed; log scale)', route: 'orders' },
    { title: 'Answers served from fallback or stale cache per second', value: (row) => row.degraded },
    {
      title: 'Calls reaching the upstream per second: inventory + orders (the failing dependency)',
      value: (row) => row.upstream.inventory + row.upstream.orders,
    },
    { title: 'Inventory bulkhead limit', value: (row) => row.bulkheadLimit ?? Number.NaN },
  ]
  const strip = 14
  const stripsTop = 74 + panels.length * (panelHeight + gap)
  const alertTimes = (result.alertIntervals ?? []).filter((i) => i.firing !== undefined)
  const height = stripsTop + 30 + variants.length * (strip + 6) + 50 + Math.ceil(alertTimes.length / 2) * 13
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    '<title>Outage experiment: per-second goodput, failures, latency, degraded answers, upstream calls and breaker state per variant</title>',
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Outage: inventory browns out (${result.framework}, ${result.total} s, one run)</text>`,
  ]
  // Two legend entries per row: the labels are long.
  const legend = variants.map(
    (v, i) =>
      `<rect x="${left + (i % 2) * 430}" y="${34 + Math.floor(i / 2) * 14}" width="14" height="4" fill="${COLORS[v.name] ?? '#333'}"/><text x="${left + 20 + (i % 2) * 430}" y="${40 + Math.floor(i / 2) * 14}">${escapeXml(`${v.name}: ${v.label}`)}</text>`,
  )
  out.push(...legend)
  const shade = (top, h) => {
    for (const bound of result.bounds) {
      out.push(
        `<rect x="${x(bound.start).toFixed(1)}" y="${top}" width="${(x(bound.end) - x(bound.start)).toFixed(1)}" height="${h}" fill="${PHASE_FILL[bound.name]}"/>`,
      )
    }
  }
  panels.forEach((panel, index) => {
    const top = 74 + index * (panelHeight + gap) + 16
    out.push(`<text x="${left}" y="${top - 5}" font-weight="bold">${escapeXml(panel.title)}</text>`)
    shade(top, panelHeight)
    const series = variants.map((v) => ({
      v,
      lines: panel.route
        ? [
            { values: v.seconds.map((row) => row.routes[panel.route].p99), dash: '' },
            { values: v.seconds.map((row) => row.routes[panel.route].p50), dash: '3 3' },
          ]
        : [{ values: v.seconds.map(panel.value), dash: '' }],
    }))
    const all = series.flatMap((s) => s.lines.flatMap((l) => l.values)).filter(Number.isFinite)
    const log = Boolean(panel.route)
    const max = Math.max(1, ...all) * 1.05
    const min = log ? Math.max(1, Math.min(...all.filter((n) => n > 0), 10) / 1.5) : 0
    const y = log
      ? (value) =>
          top +
          panelHeight -
          ((Math.log10(Math.max(value, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min))) * panelHeight
      : (value) => top + panelHeight - (value / max) * panelHeight
    out.push(`<rect x="${left}" y="${top}" width="${plotWidth}" height="${panelHeight}" fill="none" stroke="#999"/>`)
    const ticks = log
      ? Array.from({ length: 6 }, (_, e) => 10 ** e).filter((v) => v >= min && v <= max)
      : [0, niceHalf(max)]
    for (const tick of ticks) {
      out.push(
        `<text x="${left - 6}" y="${(y(tick) + 4).toFixed(1)}" text-anchor="end">${tick}</text>`,
        `<line x1="${left}" x2="${left + plotWidth}" y1="${y(tick).toFixed(1)}" y2="${y(tick).toFixed(1)}" stroke="#ddd"/>`,
      )
    }
    for (const { v, lines } of series) {
      for (const line of lines) {
        let d = ''
        let pen = 'M'
        line.values.forEach((value, t) => {
          if (!Number.isFinite(value)) {
            pen = 'M'
            return
          }
          d += `${pen}${x(t + 0.5).toFixed(1)},${y(value).toFixed(1)} `
          pen = 'L'
        })
        if (d) {
          out.push(
            `<path d="${d.trim()}" fill="none" stroke="${COLORS[v.name] ?? '#333'}" stroke-width="1.6" stroke-dasharray="${line.dash}" opacity="0.9"/>`,
          )
        }
      }
    }
    for (const alert of alertTimes) {
      out.push(
        `<line x1="${x(alert.firing).toFixed(1)}" x2="${x(alert.firing).toFixed(1)}" y1="${top}" y2="${top + panelHeight}" stroke="#2c3e50" stroke-dasharray="2 3"/>`,
      )
    }
  })
  // Breaker state per variant, one strip each; alert names under them.
  out.push(
    `<text x="${left}" y="${stripsTop + 10}" font-weight="bold">Inventory circuit breaker (green closed, yellow half-open, red open, grey no breaker or no answer to the sample)</text>`,
  )
  variants.forEach((v, i) => {
    const top = stripsTop + 18 + i * (strip + 6)
    out.push(`<text x="${left - 6}" y="${top + 11}" text-anchor="end">${v.name}</text>`)
    for (const row of v.seconds) {
      out.push(
        `<rect x="${x(row.t).toFixed(1)}" y="${top}" width="${(x(1) - x(0)).toFixed(2)}" height="${strip}" fill="${STATE_FILL[row.breaker ?? 'none'] ?? '#eee'}"/>`,
      )
    }
  })
  const axisTop = stripsTop + 18 + variants.length * (strip + 6) + 4
  for (let t = 0; t <= result.total; t += 10) {
    out.push(`<text x="${x(t).toFixed(1)}" y="${axisTop + 10}" text-anchor="middle">${t}s</text>`)
  }
  for (const bound of result.bounds) {
    out.push(
      `<text x="${x((bound.start + bound.end) / 2).toFixed(1)}" y="${axisTop + 24}" text-anchor="middle" font-style="italic">${bound.name}</text>`,
    )
  }
  alertTimes.forEach((alert, i) => {
    out.push(
      `<text x="${left + (i % 2) * 430}" y="${axisTop + 40 + Math.floor(i / 2) * 13}" fill="#2c3e50">┆ ${escapeXml(`${alert.key} fired at ${alert.firing.toFixed(0)} s${alert.resolved === undefined ? '' : `, resolved ${alert.resolved.toFixed(0)} s`}`)}</text>`,
    )
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

function niceHalf(max) {
  const raw = max / 2
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  return Math.round(raw / magnitude) * magnitude
}

function escapeXml(text) {
  return String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;')
}
