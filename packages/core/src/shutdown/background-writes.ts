// Writes that outlive their request (an idempotency result a stalled store has not taken yet) and that graceful
// shutdown gives a bounded chance to land before the process exits: the process going away is the one event
// that turns "written later" into "never written". Only policies holding such writes are registered, so the set
// is empty on a healthy store and never keeps a disposed policy alive for long.

/** Something holding writes that shutdown should flush before exit. */
export interface BackgroundWrites {
  /**
   * Write everything held now, retrying until done or until `signal` aborts (the shutdown deadline); then give
   * up the rest. Resolves with how many writes were given up; never rejects, never outlasts the signal.
   */
  flush(signal: AbortSignal): Promise<number>
}

const holders = new Set<BackgroundWrites>()

/** @internal A holder now has writes pending (idempotent). */
export function holdingWrites(holder: BackgroundWrites): void {
  holders.add(holder)
}

/** @internal A holder has nothing pending any more. */
export function writesDone(holder: BackgroundWrites): void {
  holders.delete(holder)
}

/**
 * Flush every holder's pending writes, all bounded by `ms`: whatever is still unwritten then is given up (each
 * holder reports its own losses). Resolves with the number given up, at the latest `ms` after the call.
 */
export async function flushBackgroundWrites(ms: number): Promise<number> {
  if (holders.size === 0) return 0
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), Math.max(0, ms))
  timer.unref()
  if (ms <= 0) controller.abort()
  try {
    const given = await Promise.all([...holders].map((holder) => holder.flush(controller.signal)))
    return given.reduce((sum, n) => sum + n, 0)
  } finally {
    clearTimeout(timer)
  }
}
