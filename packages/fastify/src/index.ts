// Public entry of @breakwater/fastify: the Fastify plugin, plus everything @breakwater/core exports, so that one
// import suffices.

export * from '@breakwater/core'
export { type BreakwaterErrorHandler, errorHandler } from './error-handler.js'
export { gracefulShutdown, health } from './health.js'
export { type FastifyIdempotencyOptions, idempotency, type RouteIdempotencyConfig } from './idempotency.js'
export { loadShedding, type RouteLoadSheddingConfig } from './load-shedding.js'
export {
  type FastifyRateLimit,
  type FastifyRateLimitOptions,
  type RouteRateLimitConfig,
  rateLimit,
} from './rate-limit.js'
export { type FastifyTimeoutOptions, type RouteTimeoutConfig, timeout } from './timeout.js'
