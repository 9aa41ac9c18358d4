// Public entry of @breakwater/redis: Redis-backed stores for Breakwater policies on your ioredis client.

export { type RedisClient, RedisStore, type RedisStoreOptions } from './redis-store.js'
