// What an adapter's one error path does with an error that escaped a handler or a body parser: answer its
// problem, stay silent because the request's own abort already ended it, or pass it on to the framework.

import type { RejectDecision } from '../decision.js'
import { problemFor } from '../problem.js'
import type { RequestContext } from './request-context.js'
import { createTimeout, type Timeout } from './timeout.js'

/** Causes followed when matching an error to the request's own abort (Node wraps it in an AbortError). */
const MAX_CAUSE_DEPTH = 4

let defaultTimeout: Timeout | undefined

/**
 * The answer to `error` for one request, the same on every framework:
 * - `'answered'` — the request's own abort ended it: the deadline's or shutdown's 503 went out already
 *   (`answered`), or the client left and the error is that abort. Nothing to send and nothing to log: a hostile
 *   client disconnecting on purpose must not fill the logs with stack traces.
 * - a {@link RejectDecision} — a handler's `DeadlineExceededError` (504) or its request's own timeout or shutdown
 *   (503), answered by `timeout`'s decisions; with `problems`, also every other error {@link problemFor} knows
 *   (Breakwater errors with a status, the frameworks' 4xx body-parser errors).
 * - `undefined` — not ours: let the framework and the app's own error handling see it.
 *
 * @example
 * const answer = errorResponse(error, req.breakwater, res.headersSent, undefined, true)
 * if (answer === 'answered') return
 * if (answer === undefined) return next(error)
 * sendRejection(res, answer)
 */
export function errorResponse(
  error: unknown,
  context: RequestContext | undefined,
  answered: boolean,
  timeout: Timeout | undefined,
  problems: boolean,
): RejectDecision | 'answered' | undefined {
  const reason = context?.abortReason
  if (reason !== undefined && (answered || (reason.kind === 'client-gone' && causedBy(error, reason)))) {
    return 'answered'
  }
  if (answered) return undefined
  defaultTimeout ??= createTimeout()
  const decision = (timeout ?? defaultTimeout).decisionFor(error, context)
  if (decision !== undefined) return decision
  return problems ? problemFor(error) : undefined
}

function causedBy(error: unknown, reason: unknown): boolean {
  let current = error
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === 'object' && current !== null; depth++) {
    if (current === reason) return true
    current = (current as { cause?: unknown }).cause
  }
  return false
}
