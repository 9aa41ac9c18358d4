// The process-wide shutdown switch: one call cancels every in-flight request's signal. Graceful shutdown pulls it
// once draining is over; anything else (a job runner, a test) may subscribe to it.

/** @internal The method shutdown calls on each live target; a symbol keeps it off handler-facing objects. */
export const cancelForShutdown = Symbol('breakwater.cancelForShutdown')

/** Something live that shutdown must cancel; request contexts register themselves while they are open. */
export interface ShutdownTarget {
  /** Abort with a shutdown reason. Called at most once per target. */
  [cancelForShutdown](): void
}

const live = new Set<ShutdownTarget>()
const listeners = new Set<() => void>()
let triggered = false

/**
 * Cancel every in-flight request: each open request context's signal aborts with a `shutdown`
 * `RequestAbortedError` (`BW_SHUTDOWN`), timeout middleware answers 503 where no response has started, and
 * contexts created afterwards start aborted. Subscribers added with {@link onShutdown} run once. Idempotent.
 * Shutdown is one-way: the process is expected to exit.
 *
 * @example
 * process.once('SIGTERM', () => {
 *   server.close()
 *   setTimeout(triggerShutdown, 10_000).unref() // in-flight requests get 10 s, then their work is cancelled
 * })
 */
export function triggerShutdown(): void {
  if (triggered) return
  triggered = true
  // Snapshot: cancelling a context removes it from `live` while we iterate.
  for (const target of [...live]) {
    try {
      target[cancelForShutdown]()
    } catch {
      // One context's abort listener throwing must not spare the others.
    }
  }
  live.clear()
  for (const listener of listeners) {
    try {
      listener()
    } catch {
      // A subscriber's failure must not stop the others from hearing about shutdown.
    }
  }
  listeners.clear()
}

/**
 * Run `listener` when {@link triggerShutdown} is called (immediately, if it already has been). Returns a function
 * that unsubscribes.
 *
 * @example
 * const unsubscribe = onShutdown(() => worker.stop())
 */
export function onShutdown(listener: () => void): () => void {
  if (typeof listener !== 'function') throw new TypeError('onShutdown(listener): listener must be a function')
  if (triggered) {
    listener()
    return noop
  }
  listeners.add(listener)
  return () => {
    listeners.delete(listener)
  }
}

/**
 * True once {@link triggerShutdown} has been called.
 *
 * @example
 * if (isShuttingDown()) return reply.code(503).send()
 */
export function isShuttingDown(): boolean {
  return triggered
}

/** @internal Register a live target; returns false (and registers nothing) when shutdown already happened. */
export function registerLive(target: ShutdownTarget): boolean {
  if (triggered) return false
  live.add(target)
  return true
}

/** @internal */
export function unregisterLive(target: ShutdownTarget): void {
  live.delete(target)
}

/** @internal How many targets are registered: a leak check for tests. */
export function liveCount(): number {
  return live.size
}

function noop(): void {}
