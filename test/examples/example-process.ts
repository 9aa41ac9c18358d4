// Example apps as child processes for the black-box suites: each started on a free port against the built
// packages, its stdout and stderr collected, killed after each test.

import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
export const FRAMEWORKS = ['express', 'fastify', 'koa'] as const

export interface Example {
  url: string
  child: ChildProcess
  output: () => string
}

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise((resolve) => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

export async function startExample(framework: string, env: Record<string, string | undefined>): Promise<Example> {
  const port = await freePort()
  const { REDIS_URL: _, TRUST_PROXY: __, ...inherited } = process.env
  const child = spawn(process.execPath, ['src/server.js'], {
    cwd: `${root}examples/${framework}`,
    env: { ...inherited, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const example = { url: `http://127.0.0.1:${port}`, child, output: () => output }
  running.push(example)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${framework} example did not start in 15 s:\n${output}`)), 15_000)
    const check = () => {
      if (output.includes('listening on')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${framework} example exited with code ${code}:\n${output}`))
    })
  })
  return example
}

/** Fail the suite early when the built packages the examples import are missing; kill examples after each test. */
export function useExamples(): void {
  beforeAll(() => {
    const missing = ['core', 'redis', ...FRAMEWORKS].filter(
      (name) => !existsSync(`${root}packages/${name}/dist/index.js`),
    )
    if (missing.length > 0) {
      throw new Error(
        `The examples import the built packages, but ${missing.map((m) => `packages/${m}/dist`).join(', ')} is missing: run \`pnpm build\` first (the root \`pnpm test\` does).`,
      )
    }
  })
  afterEach(() => {
    for (const example of running.splice(0)) example.child.kill('SIGKILL')
  })
}

const running: Example[] = []
