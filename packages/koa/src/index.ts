// Public entry of @breakwater/koa: the Koa middleware, plus everything @breakwater/core exports, so that one import
// suffices.

export * from '@breakwater/core'
export { errorHandler } from './error-handler.js'
export { gracefulShutdown, type HealthMiddleware, health } from './health.js'
export { type IdempotencyMiddleware, idempotency } from './idempotency.js'
export { type LoadSheddingMiddleware, loadShedding } from './load-shedding.js'
export { type RateLimitMiddleware, rateLimit } from './rate-limit.js'
export { type TimeoutMiddleware, timeout } from './timeout.js'
