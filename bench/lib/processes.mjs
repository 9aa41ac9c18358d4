// Child processes of the benchmark: the Redis it owns, the server under test, and their CPU accounting.

import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000

/** Every child still running, so an interrupted run can stop exactly the processes it started. */
const children = new Set()

/** Stop every child this process started (by its own handle, never by name). */
export function killChildren() {
  for (const child of children) child.kill('SIGKILL')
}

/** On Ctrl-C or SIGTERM, stop every child this process started, then exit 130. */
export function stopChildrenOnInterrupt() {
  const interrupt = () => {
    killChildren()
    process.exit(130)
  }
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
}

/** A port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.unref()
    probe.on('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
  })
}

function track(child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

function exited(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', resolve))
}

/** SIGTERM, then SIGKILL if the process has not exited within a few seconds. */
export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited(child)
  clearTimeout(timer)
}

/**
 * Start a throwaway Redis (no persistence) on a free port and wait until it answers PING.
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, url: string, version: string, client: import('ioredis').Redis }>}
 */
export async function startRedis() {
  const { Redis } = await import('ioredis')
  const port = await freePort()
  const child = track(
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  )
  let spawnError
  child.once('error', (error) => {
    spawnError = error
  })
  const url = `redis://127.0.0.1:${port}`
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  // Refused connections while redis-server boots are expected; later failures surface as rejected commands.
  client.on('error', () => {})
  for (let attempt = 0; ; attempt++) {
    if (spawnError) throw new Error(`cannot start redis-server (is it on PATH?): ${spawnError.message}`)
    try {
      await client.connect()
      await client.ping()
      break
    } catch (error) {
      client.disconnect()
      if (attempt > 100) throw new Error(`redis-server did not answer on ${url}: ${error.message}`)
      await sleep(50)
    }
  }
  const info = await client.info('server')
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
  return { child, url, version, client }
}

/**
 * Start one benchmark server and wait for its ready line.
 * @returns {Promise<{ child, port: number, stderr: () => string } | { unavailable: string }>}
 */
export function startServer(
  file,
  variant,
  { env, nodeFlags = [], cwd, launcher = [], readyTimeoutMs = READY_TIMEOUT_MS },
) {
  // `launcher` runs node under another program (valgrind): [command, ...its arguments], node and its flags after.
  const [command, ...launcherArgs] = [...launcher, process.execPath]
  const child = track(
    spawn(command, [...launcherArgs, ...nodeFlags, file, variant], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  )
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-8_000)
  })
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${file} ${variant} was not ready within ${readyTimeoutMs} ms\n${stderr}`))
    }, readyTimeoutMs)
    const onExit = (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${file} ${variant} exited before ready (code ${code}, signal ${signal})\n${stderr}`))
    }
    child.once('exit', onExit)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      buffered += chunk
      let newline = buffered.indexOf('\n')
      while (newline !== -1) {
        const line = buffered.slice(0, newline)
        buffered = buffered.slice(newline + 1)
        newline = buffered.indexOf('\n')
        let message
        try {
          message = JSON.parse(line)
        } catch {
          continue
        }
        if (message.unavailable) {
          clearTimeout(timer)
          child.off('exit', onExit)
          resolve({ unavailable: message.unavailable })
        } else if (message.ready) {
          clearTimeout(timer)
          child.off('exit', onExit)
          resolve({ child, port: message.port, stderr: () => stderr })
        }
      }
    })
  })
}

let clockTicks
function ticksPerSecond() {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  return clockTicks
}

/** CPU seconds (user + system) a process has used so far, from /proc; undefined where that is unavailable. */
export function cpuSeconds(pid) {
  if (pid === undefined || process.platform !== 'linux') return undefined
  try {
    ticksPerSecond()
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which sits in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / clockTicks
  } catch {
    return undefined
  }
}

/** CPU seconds the whole machine has spent busy (not idle, not waiting on I/O) so far; undefined off Linux. */
export function machineBusySeconds() {
  if (process.platform !== 'linux') return undefined
  try {
    const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).map(Number)
    const [user, nice, system, , , irq, softirq, steal] = ticks
    return (user + nice + system + irq + softirq + steal) / ticksPerSecond()
  } catch {
    return undefined
  }
}

/**
 * Wait (at most `maxMs`) until processes other than ours use less than `threshold` cores, so a variant does not
 * start while e.g. a compiler runs next to it. Returns the busy cores seen last, or undefined off Linux.
 */
export async function waitForQuietMachine(ownPids, { threshold = 0.3, maxMs = 3_000, sampleMs = 500 } = {}) {
  const deadline = performance.now() + maxMs
  for (;;) {
    const ours = () => ownPids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0)
    const busy0 = machineBusySeconds()
    if (busy0 === undefined) return undefined
    const ours0 = ours()
    await sleep(sampleMs)
    const others = (machineBusySeconds() - busy0 - (ours() - ours0)) / (sampleMs / 1000)
    if (others < threshold || performance.now() > deadline) return others
  }
}
