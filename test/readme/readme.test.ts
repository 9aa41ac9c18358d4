// Docs that cannot rot: every ts/js code block of every README.md in the repository is type-checked under
// `strict` against the built packages (their dist, as a user installs them), once with `moduleResolution`
// node16 and once with bundler — one tsc program per resolution mode for all blocks. Blocks marked
// `<!-- check: app -->` are whole apps: each is started on a free 127.0.0.1 port (`PORT`) and must answer one
// `GET /` with 200.
//
// Markers, on the line directly above a fence:
//   <!-- check: fragment -->  a deliberate fragment: not compiled (it is still extracted, so it must be fenced)
//   <!-- check: app -->       a whole runnable app: compiled, then run against 127.0.0.1 with one request
// Any other block is a complete module: imports included, no undefined names.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../', import.meta.url))
/** Inside the test workspace, so the blocks' imports resolve through test/node_modules to the built packages. */
const outDir = fileURLToPath(new URL('./.snippets/', import.meta.url))
const tsc = join(root, 'node_modules/typescript/bin/tsc')

type Mode = 'module' | 'fragment' | 'app'
interface Block {
  /** `README.md:<line>` of the opening fence, as reported on failure. */
  readonly where: string
  readonly mode: Mode
  readonly lang: 'ts' | 'js'
  readonly code: string
  /** The extracted file, named after its README and line. */
  file: string
}

/** Every README.md under the repository root, outside node_modules, dist and dot-directories. */
function readmes(dir = root): string[] {
  const found: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name === 'dist') continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) found.push(...readmes(path))
    else if (entry.name === 'README.md') found.push(path)
  }
  return found.sort()
}

const FENCE = /^```(\w*)\s*$/
const MARKER = /^<!--\s*check:\s*(fragment|app)\s*-->$/
const LANGS: Record<string, 'ts' | 'js'> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js', mjs: 'js' }

/** The ts/js blocks of one README, with the marker on the line above each fence. */
export function extractBlocks(path: string, text: string): Block[] {
  const lines = text.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] as string)
    if (!open) continue
    let end = i + 1
    while (end < lines.length && !/^```\s*$/.test(lines[end] as string)) end++
    const lang = LANGS[open[1] ?? '']
    if (lang !== undefined) {
      const marker = MARKER.exec((lines[i - 1] ?? '').trim())
      blocks.push({
        where: `${relative(root, path)}:${i + 1}`,
        mode: (marker?.[1] as Mode | undefined) ?? 'module',
        lang,
        code: lines.slice(i + 1, end).join('\n'),
        file: '',
      })
    }
    i = end
  }
  return blocks
}

const blocks = readmes().flatMap((path) => extractBlocks(path, readFileSync(path, 'utf8')))
const compiled = blocks.filter((b) => b.mode !== 'fragment')
const apps = blocks.filter((b) => b.mode === 'app')

/** Type-check every compiled block in one tsc program; the errors by block. */
async function typecheck(moduleResolution: 'node16' | 'bundler'): Promise<Map<string, string[]>> {
  const config = {
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: 'es2022',
      lib: ['es2023', 'dom'],
      module: moduleResolution === 'node16' ? 'node16' : 'esnext',
      moduleResolution,
      types: ['node'],
      skipLibCheck: true,
      esModuleInterop: true,
      allowJs: true,
      checkJs: true,
      // A JS block gets the inference a user's editor gives it; unannotated callback parameters are fine there.
      noImplicitAny: false,
    },
    files: compiled.map((b) => b.file),
  }
  const configPath = join(outDir, `tsconfig.${moduleResolution}.json`)
  writeFileSync(configPath, JSON.stringify(config, null, 2))
  const { stdout } = await run(process.execPath, [tsc, '-p', configPath, '--pretty', 'false'], {
    cwd: outDir,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout: string }) => error)
  const byBlock = new Map<string, string[]>()
  for (const line of stdout.split('\n')) {
    const match = /^(.+?)\((\d+),\d+\): (error .*)$/.exec(line.trim())
    if (!match) continue
    const block = compiled.find(
      (b) => b.file === join(outDir, match[1] as string) || b.file.endsWith(match[1] as string),
    )
    const key = block?.where ?? match[1]!
    byBlock.set(key, [...(byBlock.get(key) ?? []), `line ${match[2]}: ${match[3]}`])
  }
  if (byBlock.size === 0 && /error/.test(stdout)) byBlock.set('tsc', [stdout])
  return byBlock
}

beforeAll(() => {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  for (const block of blocks) {
    const name = block.where.replace(/[/:.]/g, '_')
    // .mts / .mjs: ES modules whatever package.json says; `export {}` keeps a block without imports its own scope.
    block.file = join(outDir, `${name}.${block.lang === 'ts' ? 'mts' : 'mjs'}`)
    writeFileSync(block.file, `${block.code}\nexport {}\n`)
  }
})

afterAll(() => {
  rmSync(outDir, { recursive: true, force: true })
})

describe('README code blocks', () => {
  it('are found in every README.md, with ts/js blocks to check', () => {
    expect(readmes().map((p) => relative(root, p))).toContain('README.md')
    expect(compiled.length).toBeGreaterThan(10)
  })

  it.each(['node16', 'bundler'] as const)(
    'type-check under strict with moduleResolution %s against the built packages',
    async (mode) => {
      const errors = await typecheck(mode)
      expect(Object.fromEntries(errors)).toEqual({})
    },
    120_000,
  )
})

/** A free port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

/** Node runs .mts only through a transpile: strip the types of an app block to a sibling .mjs file. */
function runnable(block: Block): string {
  if (block.lang === 'js') return block.file
  const out = block.file.replace(/\.mts$/, '.run.mjs')
  const { outputText } = ts.transpileModule(block.code, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
  })
  writeFileSync(out, outputText)
  return out
}

describe.runIf(apps.length > 0)('README apps', () => {
  it.each(apps.map((b) => [b.where, b] as const))(
    '%s starts on 127.0.0.1 and answers GET / with 200',
    async (_where, block) => {
      const port = await freePort()
      let output = ''
      const child: ChildProcess = spawn(process.execPath, [runnable(block)], {
        cwd: outDir,
        env: { ...process.env, PORT: String(port), HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      child.stdout?.on('data', (d) => (output += d))
      child.stderr?.on('data', (d) => (output += d))
      try {
        const deadline = Date.now() + 15_000
        let status = 0
        while (Date.now() < deadline && child.exitCode === null) {
          status = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2_000) }).then(
            (r) => r.status,
            () => 0,
          )
          if (status !== 0) break
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
        expect({ status, output: status === 200 ? '' : output }).toEqual({ status: 200, output: '' })
      } finally {
        child.kill('SIGKILL')
      }
    },
    30_000,
  )
})
