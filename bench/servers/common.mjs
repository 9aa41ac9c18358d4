// Shared plumbing of the benchmark servers: which variant to run, the one Redis client options every library
// gets, the hello-world payload, and the stdout protocol the driver (bench/run.mjs) reads.

/**
 * Never rejects during a run: every library gets the same "huge limit, one minute window". BENCH_LIMIT lowers it
 * to check that the driver catches rejections (every limited row must then show ERROR).
 */
export const LIMIT = Number(process.env.BENCH_LIMIT ?? 1e9)
export const WINDOW_MS = 60_000

/** The payload of every hello-world handler. */
export const PAYLOAD = { hello: 'world' }

/**
 * The ioredis options every Redis variant uses, whatever the library. Auto-pipelining batches the commands of
 * one event-loop tick into one write, which every peer that takes an ioredis client benefits from equally.
 */
export const REDIS_CLIENT_OPTIONS = Object.freeze({ enableAutoPipelining: true })

/** The variant to run: argv[2], else BENCH_VARIANT. */
export function variantName() {
  const name = process.argv[2] ?? process.env.BENCH_VARIANT
  if (!name) fail('usage: node servers/<framework>.mjs <variant>')
  return name
}

/** An ioredis client on the benchmark's own Redis (BENCH_REDIS_URL), connected before the server is ready. */
export async function connectRedis() {
  const url = process.env.BENCH_REDIS_URL
  if (!url) fail('BENCH_REDIS_URL is not set; the driver starts its own Redis and passes it')
  const { Redis } = await import('ioredis')
  const client = new Redis(url, REDIS_CLIENT_OPTIONS)
  await client.ping()
  return client
}

/**
 * Load a Breakwater adapter's export. The adapters are built alongside this benchmark; while a package is still
 * a placeholder the variant is reported as unavailable (exit code 3) rather than crashing the run.
 */
export async function breakwater(specifier, exportName) {
  let mod
  try {
    mod = await import(specifier)
  } catch (error) {
    unavailable(`${specifier} cannot be loaded (${error.code ?? error.message}); run pnpm build`)
  }
  const value = mod[exportName]
  if (value === undefined) unavailable(`${specifier} does not export ${exportName} yet`)
  return value
}

/** Tell the driver the server listens; it parses this line. */
export function ready(port) {
  process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`)
}

/** Exit through process.exit on SIGTERM/SIGINT so `--cpu-prof` gets to write its profile. */
export function exitOnSignal(cleanup) {
  const stop = async () => {
    try {
      await cleanup?.()
    } finally {
      process.exit(0)
    }
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

export function unavailable(reason) {
  process.stdout.write(`${JSON.stringify({ unavailable: reason })}\n`)
  process.exit(3)
}

export function unknownVariant(framework, name, known) {
  fail(`unknown ${framework} variant "${name}"; known: ${known.join(', ')}`)
}

function fail(message) {
  process.stderr.write(`${message}\n`)
  process.exit(2)
}
