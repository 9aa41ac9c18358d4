// One-time coded warnings: configuration smells are reported once, never thrown into traffic.

import { channels, publish } from '../events.js'

/** Where warnings go. Defaults to `process.emitWarning`. */
export type WarningLogger = (warning: { code: string; message: string }) => void

const defaultLogger: WarningLogger = ({ code, message }) => {
  process.emitWarning(message, { code, type: 'BreakwaterWarning' })
}

const emitted = new Set<string>()

/** Emit `code` once per process (per `dedupe` key) to `logger` and `breakwater:warning`. */
export function warnOnce(code: string, message: string, logger: WarningLogger = defaultLogger, dedupe = code): void {
  if (emitted.has(dedupe)) return
  emitted.add(dedupe)
  if (channels.warning.hasSubscribers) publish(channels.warning, { code, message })
  try {
    logger({ code, message })
  } catch {
    // A broken logger must not break a request.
  }
}
