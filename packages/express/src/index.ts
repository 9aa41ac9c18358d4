// Public entry of @breakwater/express: the Express middleware, plus everything @breakwater/core exports, so that one
// import suffices.

export * from '@breakwater/core'
export { errorHandler, timeoutErrorHandler } from './error-handler.js'
export { gracefulShutdown, type HealthRouter, health } from './health.js'
export { type IdempotencyMiddleware, idempotency, keepRawBody } from './idempotency.js'
export { type LoadSheddingMiddleware, loadShedding } from './load-shedding.js'
export { type RateLimitMiddleware, rateLimit } from './rate-limit.js'
export { type TimeoutMiddleware, timeout } from './timeout.js'
