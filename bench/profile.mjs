// Summarizes V8 .cpuprofile files: where self time goes, by function and by package, with Breakwater's built
// dist locations mapped back to their TypeScript sources through the published source maps.
// Usage: node bench/profile.mjs <file.cpuprofile | directory> [--top 25]

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { SourceMap } from 'node:module'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..')
const sourceMaps = new Map()
/** Callbacks through which a middleware hands over to the rest of the app (Express, Fastify hooks, Koa). */
const CONTINUATIONS = new Set(['next', 'dispatch', 'done'])

/**
 * The source map of a Breakwater dist file: the copy `run.mjs --profile` took when the server started (the dist
 * may have been rebuilt since), else the current one.
 */
function sourceMapOf(path, snapshotDir) {
  const dist = /packages\/([^/]+)\/dist\/(.+)$/.exec(path)
  if (!dist) return undefined
  const snapshot = snapshotDir && join(snapshotDir, dist[1], `${dist[2]}.map`)
  const file = snapshot && existsSync(snapshot) ? snapshot : `${path}.map`
  if (!existsSync(file)) return undefined
  let map = sourceMaps.get(file)
  if (map === undefined) {
    map = new SourceMap(JSON.parse(readFileSync(file, 'utf8')))
    sourceMaps.set(file, map)
  }
  return map
}

/** Copy the Breakwater packages' dist source maps next to a profile, so it can be read after a rebuild. */
export function snapshotSourceMaps(targetDir) {
  const packagesDir = join(ROOT, 'packages')
  for (const pkg of readdirSync(packagesDir)) {
    const dist = join(packagesDir, pkg, 'dist')
    if (!existsSync(dist)) continue
    for (const file of readdirSync(dist).filter((f) => f.endsWith('.map'))) {
      mkdirSync(join(targetDir, pkg), { recursive: true })
      copyFileSync(join(dist, file), join(targetDir, pkg, file))
    }
  }
}

/** Where a profile frame lives, as `file:line`, with Breakwater dist frames mapped to src. */
function locate(callFrame, snapshotDir) {
  const { url, lineNumber, columnNumber } = callFrame
  if (!url) return '(native)'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const map = sourceMapOf(path, snapshotDir)
  if (map !== undefined) {
    const entry = map.findEntry(lineNumber, columnNumber)
    if (entry?.originalSource) {
      const source = entry.originalSource.replace(/^(\.\.\/)+/, '')
      const pkg = /packages\/([^/]+)\//.exec(path)[1]
      return `packages/${pkg}/${source.replace(/^.*?src\//, 'src/')}:${entry.originalLine + 1}`
    }
  }
  const shown = path.startsWith(ROOT) ? relative(ROOT, path) : path
  return `${shown.replace(/^.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')}:${lineNumber + 1}`
}

/** The package a frame belongs to: a Breakwater package, a dependency, node internals, or V8. */
function moduleOf(callFrame) {
  const { url, functionName } = callFrame
  if (!url) return functionName.startsWith('(') ? functionName : '(native)'
  const breakwater = /packages\/([^/]+)\/dist\//.exec(url)
  if (breakwater) return `@breakwater/${breakwater[1]}`
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(url)
  if (dependency) return dependency[1]
  if (url.startsWith('node:')) return 'node (core)'
  if (url.includes('/bench/')) return 'bench server'
  return url
}

/** Self time per function and per module, in ms and % of the profile. */
export function analyze(file, top = 25) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const snapshotDir = join(dirname(file), 'sourcemaps')
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
  const self = new Map()
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  })
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const byFunction = new Map()
  const byModule = new Map()
  for (const [id, micros] of self) {
    const { callFrame } = nodes.get(id)
    const name = `${callFrame.functionName || '(anonymous)'}  ${locate(callFrame, snapshotDir)}`
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros)
    const module = moduleOf(callFrame)
    byModule.set(module, (byModule.get(module) ?? 0) + micros)
  }
  // Inclusive time of Breakwater code: every sample whose synchronous stack holds a Breakwater frame, charged
  // once to each distinct Breakwater function on it, plus which modules the leaves of those samples were in.
  // What Breakwater's continuation callback runs (Express `next`, Fastify hook `next`, Koa `dispatch`: the rest
  // of the app) is not Breakwater's. Work resumed from promises (a Redis reply) has no Breakwater caller on its
  // stack and is not counted either.
  const parents = new Map()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  const isBreakwater = (id) => moduleOf(nodes.get(id).callFrame).startsWith('@breakwater/')
  const attribution = new Map()
  /** The Breakwater functions a node's time is charged to (empty: none). */
  const framesOf = (id) => {
    let frames = attribution.get(id)
    if (frames !== undefined) return frames
    const parent = parents.get(id)
    const { callFrame } = nodes.get(id)
    if (isBreakwater(id)) {
      const name = `${callFrame.functionName || '(anonymous)'}  ${locate(callFrame, snapshotDir)}`
      const outer = parent === undefined ? [] : framesOf(parent)
      frames = outer.includes(name) ? outer : [...outer, name]
    } else if (parent !== undefined && isBreakwater(parent) && CONTINUATIONS.has(callFrame.functionName)) {
      frames = []
    } else {
      frames = parent === undefined ? [] : framesOf(parent)
    }
    attribution.set(id, frames)
    return frames
  }
  const inclusive = new Map()
  const leavesUnderBreakwater = new Map()
  let underBreakwater = 0
  for (const [id, micros] of self) {
    const frames = framesOf(id)
    if (frames.length === 0) continue
    underBreakwater += micros
    for (const name of frames) inclusive.set(name, (inclusive.get(name) ?? 0) + micros)
    const leaf = moduleOf(nodes.get(id).callFrame)
    leavesUnderBreakwater.set(leaf, (leavesUnderBreakwater.get(leaf) ?? 0) + micros)
  }

  const rank = (map) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, micros]) => ({ name, ms: micros / 1000, percent: (100 * micros) / total }))
  return {
    file,
    totalMs: total / 1000,
    idleMs: (byModule.get('(idle)') ?? 0) / 1000,
    functions: rank(byFunction),
    modules: rank(byModule),
    breakwater: {
      ms: underBreakwater / 1000,
      percent: (100 * underBreakwater) / total,
      functions: rank(inclusive),
      leaves: rank(leavesUnderBreakwater),
    },
  }
}

export function formatAnalysis({ file, totalMs, idleMs, functions, modules, breakwater }) {
  const line = ({ name, ms, percent }) => `| ${percent.toFixed(1)} % | ${ms.toFixed(0)} | \`${name.trim()}\` |`
  const busy = totalMs - idleMs
  const breakwaterPart =
    breakwater.ms === 0
      ? []
      : [
          `Under Breakwater frames (synchronous stacks): ${breakwater.ms.toFixed(0)} ms, ${breakwater.percent.toFixed(1)} % of all samples, ${((100 * breakwater.ms) / busy).toFixed(1)} % of non-idle.`,
          '',
          '| inclusive | ms | Breakwater function  location |',
          '|--:|--:|---|',
          ...breakwater.functions.map(line),
          '',
          '| share | ms | where those samples were (leaf module) |',
          '|--:|--:|---|',
          ...breakwater.leaves.map(line),
          '',
        ]
  return [
    `#### ${basename(file)} (${(totalMs / 1000).toFixed(1)} s sampled, ${(idleMs / 1000).toFixed(1)} s idle)`,
    '',
    '| self | ms | module |',
    '|--:|--:|---|',
    ...modules.map(line),
    '',
    '| self | ms | function  location |',
    '|--:|--:|---|',
    ...functions.map(line),
    '',
    ...breakwaterPart,
  ].join('\n')
}

/** Summaries of the newest profile of each profiled variant (bench/run.mjs --profile). */
export function summarizeProfiles(directory, order, top = 20) {
  const parts = ['## CPU profiles (self time)', '']
  for (const { framework, variant } of order) {
    const dir = join(directory, `${framework}-${variant.name}`)
    if (!existsSync(dir)) continue
    const newest = readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
    if (!newest) continue
    parts.push(`### ${framework} ${variant.name}`, '', formatAnalysis(analyze(newest, top)))
  }
  return parts.join('\n')
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const target = process.argv[2]
  const topIndex = process.argv.indexOf('--top')
  const top = topIndex === -1 ? 25 : Number(process.argv[topIndex + 1])
  if (!target) {
    process.stderr.write('usage: node bench/profile.mjs <file.cpuprofile | directory> [--top 25]\n')
    process.exit(2)
  }
  const files = statSync(target).isDirectory()
    ? readdirSync(target, { recursive: true })
        .filter((f) => String(f).endsWith('.cpuprofile'))
        .map((f) => join(target, String(f)))
    : [target]
  for (const file of files) process.stdout.write(`${formatAnalysis(analyze(file, top))}\n`)
}
