// Find the real promtool (Prometheus 2.42 from Debian's `prometheus` package): on the PATH, or where .ci/run
// unpacks it. Missing promtool is an error with the way to get it, never a skipped test.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where .ci/run unpacks the Debian package (`dpkg-deb -x`) when the machine has no promtool. */
export const TOOLS_DIR = process.env.BREAKWATER_TOOLS_DIR ?? join(homedir(), '.cache', 'breakwater-tools')

export function promtoolPath(): string {
  const candidates = [
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'promtool')),
    join(TOOLS_DIR, 'prometheus', 'usr', 'bin', 'promtool'),
  ]
  const found = candidates.find((path) => existsSync(path))
  if (found === undefined) {
    throw new Error(
      `promtool not found on the PATH nor in ${TOOLS_DIR}: run .ci/run, or \`apt-get download prometheus && dpkg-deb -x prometheus_*.deb ${TOOLS_DIR}/prometheus\``,
    )
  }
  return found
}

/** Run promtool with `args`; resolves with its output, rejects with it when promtool fails. */
export async function promtool(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await run(promtoolPath(), args, { cwd })
    return stdout + stderr
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout}${stderr}`)
  }
}
