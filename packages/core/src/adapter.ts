// Entry of @breakwater/core/adapter: the hooks a framework adapter needs and an application never calls — the
// request context tied to a response, the reports of a handler's start and end, late-write guards, and the
// error-to-response step of an adapter's error handler. The user API is @breakwater/core.

export { prepareRejection, responseEnded } from './internal/response.js'
export { errorResponse } from './timeout/error-response.js'
export { guardLateWrites } from './timeout/late-writes.js'
export type { ExpiryHandler } from './timeout/request-context.js'
export {
  existingRequestContext,
  handedOn,
  handlerSettled,
  handlerStarted,
  reportLateWrite,
  requestContext,
} from './timeout/response-lifecycle.js'
