// Throwaway redis-server processes: single nodes on free ports, a 3-master Cluster, SIGSTOP/SIGCONT to simulate
// a hung Redis. Killed on stop() and when the process exits. No vitest import: global setup loads this file too.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const HOST = '127.0.0.1'
const READY_TIMEOUT_MS = 10_000

/** A redis-server child process owned by the test run. */
export interface RedisServer {
  readonly host: string
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** True between start() and stop(). */
  readonly running: boolean
  /** Kill the server (SIGKILL: nothing to persist) and wait until it has exited. Idempotent. */
  stop(): Promise<void>
  /** Start it again on the same port, empty, and wait until it answers. */
  start(): Promise<void>
  /** Freeze it with SIGSTOP: connections stay open and nothing answers — a hung Redis. */
  pause(): void
  /** Unfreeze a paused server with SIGCONT. */
  resume(): void
  /** Run a command with redis-cli against this server and return its output. */
  cli(...args: string[]): Promise<string>
}

/** A Redis Cluster of masters started by {@link startCluster}. */
export interface RedisCluster {
  readonly nodes: readonly RedisServer[]
  /** Ready for `new Cluster(startupNodes)`. */
  readonly startupNodes: Array<{ host: string; port: number }>
  /** Stop every node. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
const dirs = new Set<string>()
let exitHookInstalled = false

/** Throw a loud error when redis-server is missing: Redis-backed tests are never skipped. */
export function assertRedisInstalled(): void {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'pipe' })
    execFileSync('redis-cli', ['--version'], { stdio: 'pipe' })
  } catch (error) {
    throw new Error(
      `Integration tests need redis-server and redis-cli (Redis ≥ 7) on PATH, e.g. \`apt-get install redis-server\` or \`brew install redis\`. They are never skipped. (${String(error)})`,
    )
  }
}

/**
 * Start a redis-server on a free port with no persistence, in its own temp dir, and wait until it answers.
 *
 * @example
 * const server = await startRedis()
 * const client = new Redis(server.url)
 * server.pause() // hung Redis
 * await server.stop()
 */
export async function startRedis(
  options: { args?: readonly string[]; clusterBus?: boolean } = {},
): Promise<RedisServer> {
  installExitHook()
  let lastError: unknown
  // A free port can be taken between the check and redis-server's bind: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort(options.clusterBus === true)
    const server = new ManagedRedis(port, options.args ?? [])
    try {
      await server.start()
      return server
    } catch (error) {
      lastError = error
      await server.stop()
    }
  }
  throw new Error(`Could not start redis-server: ${String(lastError)}`)
}

/**
 * Start a Redis Cluster of `masters` (default 3) masters, each with `replicas` replicas (default 0), and wait for
 * `cluster_state:ok`. `nodeTimeoutMs` (default 3000) is how long a silent master takes to be failed over.
 *
 * @example
 * const cluster = await startCluster()
 * const client = new Cluster(cluster.startupNodes)
 */
export async function startCluster(
  options: { masters?: number; replicas?: number; nodeTimeoutMs?: number } = {},
): Promise<RedisCluster> {
  const masters = options.masters ?? 3
  const replicas = options.replicas ?? 0
  const clusterArgs = [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(options.nodeTimeoutMs ?? 3000),
  ]
  const nodes = await Promise.all(
    Array.from({ length: masters * (1 + replicas) }, () => startRedis({ args: clusterArgs, clusterBus: true })),
  )
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((node) => node.stop()))
  }
  try {
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${HOST}:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    )
    const deadline = Date.now() + 30_000
    for (const node of nodes) {
      while (!(await node.cli('cluster', 'info')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`cluster node ${node.port} never reached cluster_state:ok`)
        await sleep(50)
      }
    }
  } catch (error) {
    await stop()
    throw error
  }
  return { nodes, startupNodes: nodes.map((n) => ({ host: HOST, port: n.port })), stop }
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

class ManagedRedis implements RedisServer {
  readonly host = HOST
  readonly port: number
  readonly url: string
  readonly #args: readonly string[]
  readonly #dir: string
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor(port: number, args: readonly string[]) {
    this.port = port
    this.url = `redis://${HOST}:${port}`
    this.#args = args
    this.#dir = join(tmpdir(), `bw-redis-${port}-${process.pid}-${Date.now().toString(36)}`)
  }

  get running(): boolean {
    return this.#child !== undefined
  }

  async start(): Promise<void> {
    if (this.#child !== undefined) return
    // A fresh dir per start: a restarted node comes back empty (cluster nodes without their old identity).
    mkdirSync(this.#dir, { recursive: true })
    dirs.add(this.#dir)
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        HOST,
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.#dir,
        '--logfile',
        join(this.#dir, 'redis.log'),
        ...this.#args,
      ],
      { stdio: 'ignore' },
    )
    this.#child = child
    live.add(child)
    let exited = false
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        exited = true
        live.delete(child)
        resolve()
      })
      child.once('error', () => {
        exited = true
        live.delete(child)
        resolve()
      })
    })
    const deadline = Date.now() + READY_TIMEOUT_MS
    while (!(await ping(this.port))) {
      if (exited || Date.now() > deadline) {
        this.#child = undefined
        throw new Error(`redis-server on port ${this.port} did not start: ${this.#log()}`)
      }
      await sleep(10)
    }
  }

  async stop(): Promise<void> {
    const child = this.#child
    this.#child = undefined
    if (child !== undefined) {
      // SIGKILL works on a SIGSTOPped process too.
      child.kill('SIGKILL')
      await this.#exited
    }
    rmSync(this.#dir, { recursive: true, force: true })
    dirs.delete(this.#dir)
  }

  pause(): void {
    this.#signal('SIGSTOP')
  }

  resume(): void {
    this.#signal('SIGCONT')
  }

  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(this.port), ...args], { timeout: 10_000 })
    return stdout
  }

  #signal(signal: NodeJS.Signals): void {
    if (this.#child === undefined) throw new Error(`redis-server on port ${this.port} is not running`)
    this.#child.kill(signal)
  }

  #log(): string {
    try {
      return readFileSync(join(this.#dir, 'redis.log'), 'utf8').slice(-2000)
    } catch {
      return '(no log)'
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // Synchronous on purpose: 'exit' handlers cannot await. SIGKILL also ends stopped (SIGSTOP) servers.
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL')
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })
}

/** True when a RESP PING on `port` answers +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')))
    socket.connect(port, HOST, () => socket.write('PING\r\n'))
  })
}

/** A port free on 127.0.0.1 — and, for cluster nodes, whose bus port (port + 10000) is free too. */
async function freePort(withBus: boolean): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = 20_000 + Math.floor(Math.random() * 25_000)
    if ((await canBind(port)) && (!withBus || (await canBind(port + 10_000)))) return port
  }
  throw new Error('No free port found for redis-server')
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}
