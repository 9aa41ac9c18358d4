// The request lifecycle as the adapters type it on the request (`req.breakwater`, `request.breakwater`,
// `ctx.breakwater`). An interface, not the RequestContext class: a program that loads both the ESM and the CJS
// declarations of an adapter merges two augmentations of one request type, and TypeScript accepts that only
// when both declare the same type — which two copies of a class with private fields never are (TS2717).

import type { AbortKind, ErrorCode } from '../errors.js'

/**
 * What a handler sees of its request's lifecycle: the one `signal` (aborted at the deadline, when the client
 * goes away, or on shutdown), the deadline and the remaining budget, and helpers to pass that budget on to
 * outbound calls. Implemented by {@link RequestContext}; see it for each member.
 *
 * @example
 * app.get('/quote', async (req, res) => {
 *   const bw = req.breakwater
 *   const r = await fetch(pricingUrl, { signal: bw.timeoutSignal(300), headers: bw.forwardHeaders() })
 *   res.json(await r.json())
 * })
 */
export interface RequestLifecycle {
  /** Aborted at the deadline, when the client goes away, or on shutdown; its reason says which. */
  readonly signal: AbortSignal
  /** Why the signal was aborted (`timeout`, `client-gone`, `shutdown`), or `undefined` while it is not. */
  readonly abortKind: AbortKind | undefined
  /** The abort reason (a `RequestAbortedError`, see `isRequestAbortedError`), or `undefined` while not aborted. */
  readonly abortReason: (Error & { readonly code: ErrorCode; readonly kind: AbortKind }) | undefined
  /** The budget this request was given in ms; `Infinity` if none. */
  readonly timeoutMs: number
  /** The absolute deadline as a Unix epoch in ms, or `Infinity` when the request has no timeout. */
  readonly deadline: number
  /** Milliseconds left before the deadline: `0` once it has passed, `Infinity` when there is none. */
  remainingMs(): number
  /** A signal for one outbound call: aborts after `ms` (504) or with the request, whichever comes first. */
  timeoutSignal(ms?: number): AbortSignal
  /** Throw `DeadlineExceededError` (504) when less than `ms` of the budget is left. */
  requireBudget(ms: number): void
  /** `{ 'Request-Timeout-Ms': '<ms left>' }` for the next hop, or `{}` without a deadline. */
  forwardHeaders(): Record<string, string>
}
