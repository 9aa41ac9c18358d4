// What a policy answers. Plain data: adapters turn it into the framework's own reply.

import type { ProblemDetails } from './problem.js'
import type { HeaderList } from './request-view.js'

/** Let the request through, adding `headers` (if any) to the response. */
export interface ContinueDecision {
  readonly action: 'continue'
  readonly headers: HeaderList | undefined
}

/** Answer now with `status`, `headers` and a problem+json `body`; the handler does not run. */
export interface RejectDecision {
  readonly action: 'reject'
  readonly status: number
  readonly headers: HeaderList
  readonly body: ProblemDetails
}

/** The answer of a policy for one request. */
export type Decision = ContinueDecision | RejectDecision

/** A decision may be available synchronously (memory store) or later (remote store). */
export type MaybePromise<T> = T | Promise<T>

/** @internal shared continue decision with no headers; never mutated. */
export const CONTINUE: ContinueDecision = Object.freeze({ action: 'continue', headers: undefined })

/** True when `value` is a promise-like; used to keep synchronous paths free of microtask hops. */
export function isPromiseLike<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
