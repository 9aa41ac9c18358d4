// The idempotency Lua script: claim, complete, release and get of one record, each one atomic EVALSHA.
// Complete and release compare the owner token inside Redis, so a stale executor can never overwrite a record.

/**
 * KEYS[1]: the record, a hash: `s` state (`p` in progress, `c` completed), `t` owner token (in progress only),
 * `f` request fingerprint, `m` response metadata (JSON `[status, headers]`), `b` response body (bytes).
 * ARGV[1]: the operation.
 * - `claim`  token, fingerprint, lock ms → `{'claimed'}`, or the record as `get` returns it.
 * - `complete` token, metadata, body, record ms → 1 if `token` held the lock (record stored), else 0.
 * - `release` token → 1 if `token` held the lock (record deleted), else 0.
 * - `get` → `{}`, `{'p', fingerprint, lock ms left}` or `{'c', fingerprint, metadata, body}`.
 * The key's own expiry is the lock while in progress and the record lifetime once completed: one key, one TTL.
 */
export const IDEMPOTENCY_LUA = `
local key = KEYS[1]
local op = ARGV[1]

local function record()
  local v = redis.call('HMGET', key, 's', 'f', 'm', 'b')
  if not v[1] then return {} end
  if v[1] == 'p' then return {'p', v[2], redis.call('PTTL', key)} end
  return {'c', v[2], v[3], v[4]}
end

if op == 'claim' then
  if redis.call('EXISTS', key) == 1 then return record() end
  redis.call('HSET', key, 's', 'p', 't', ARGV[2], 'f', ARGV[3])
  redis.call('PEXPIRE', key, ARGV[4])
  return {'claimed'}
elseif op == 'complete' then
  local v = redis.call('HMGET', key, 's', 't')
  if v[1] ~= 'p' or v[2] ~= ARGV[2] then return 0 end
  redis.call('HSET', key, 's', 'c', 'm', ARGV[3], 'b', ARGV[4])
  redis.call('HDEL', key, 't')
  redis.call('PEXPIRE', key, ARGV[5])
  return 1
elseif op == 'release' then
  local v = redis.call('HMGET', key, 's', 't')
  if v[1] ~= 'p' or v[2] ~= ARGV[2] then return 0 end
  redis.call('DEL', key)
  return 1
elseif op == 'get' then
  return record()
end
return redis.error_reply('unknown idempotency operation')
`
