// Public entry of @breakwater/redis: Redis-backed stores for Breakwater policies on your ioredis client.

export { RedisBreakerStateStore, type RedisBreakerStateStoreOptions } from './breaker-state-store.js'
export { logClientErrors } from './client-errors.js'
export { type RedisCheckOptions, redisCheck } from './health-check.js'
export { RedisIdempotencyStore, type RedisIdempotencyStoreOptions } from './idempotency-store.js'
export { type RedisClient, RedisRateLimitStore, type RedisRateLimitStoreOptions } from './rate-limit-store.js'
export { RedisResultStore, type RedisResultStoreOptions } from './result-store.js'
