// The process-wide shutdown switch: one call cancels every in-flight request's signal. Graceful shutdown pulls it
// once draining is over; anything else (a job runner, a test) may subscribe to it.

/** @internal The method shutdown calls on each live target; a symbol keeps it off handler-facing objects. */
export const cancelForShutdown = Symbol('breakwater.cancelForShutdown')

/** @internal The links of the live list, kept on the targets themselves. */
export const livePrev = Symbol('breakwater.livePrev')
/** @internal */
export const liveNext = Symbol('breakwater.liveNext')

/** Something live that shutdown must cancel; request contexts register themselves while they are open. */
export interface ShutdownTarget {
  /** Abort with a shutdown reason. Called at most once per target. */
  [cancelForShutdown](): void
  [livePrev]: ShutdownTarget | undefined
  [liveNext]: ShutdownTarget | undefined
}

/**
 * Every open target, as a doubly linked list through the targets' own fields: registering and unregistering a
 * request is two or three field writes. A `Set` cost ~1.8k instructions per request (hashing a new object, and
 * rehashing the table as deleted entries pile up) — as much as the rest of a request's deadline.
 */
let head: ShutdownTarget | undefined
let size = 0
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
  // Snapshot and empty the list first: cancelling a context unregisters it, which is then a no-op.
  const targets: ShutdownTarget[] = []
  for (let target = head; target !== undefined; ) {
    const next: ShutdownTarget | undefined = target[liveNext]
    target[livePrev] = target[liveNext] = undefined
    targets.push(target)
    target = next
  }
  head = undefined
  size = 0
  for (const target of targets) {
    try {
      target[cancelForShutdown]()
    } catch {
      // One context's abort listener throwing must not spare the others.
    }
  }
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
  const first = head
  target[liveNext] = first
  if (first !== undefined) first[livePrev] = target
  head = target
  size++
  return true
}

/** @internal Remove a registered target; a no-op for one that is not registered (any more). */
export function unregisterLive(target: ShutdownTarget): void {
  const prev = target[livePrev]
  const next = target[liveNext]
  if (prev === undefined && head !== target) return
  if (prev === undefined) head = next
  else prev[liveNext] = next
  if (next !== undefined) next[livePrev] = prev
  target[livePrev] = target[liveNext] = undefined
  size--
}

/** @internal How many targets are registered: a leak check for tests. */
export function liveCount(): number {
  return size
}

function noop(): void {}
