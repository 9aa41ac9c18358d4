// The idempotency Lua script: claim, complete, extend, release and get of one record, each one atomic EVALSHA.
// Complete, extend and release compare the owner token inside Redis, so a stale executor can never overwrite a
// record. Lock deadlines are read from Redis's own clock (TIME), so app clocks cannot skew them.

/**
 * KEYS[1]: the record, a hash: `s` state (`p` in progress, `c` completed), `t` owner token (in progress only),
 * `f` request fingerprint, `d` lock deadline (Redis ms, in progress only), `r` set once a lapsed lock was renewed,
 * `m` response metadata (JSON `[status, headers]`), `b` response body (bytes).
 * ARGV[1]: the operation.
 * - `claim`  token, fingerprint, lock ms, keep ms → `{'claimed'}`, or the record as `get` returns it. A lock
 *   past its deadline is renewed once for lock ms (answering the record); only a claim past the renewed deadline
 *   takes the key over. The key's own TTL (keep ms) only bounds how long an in-progress record is kept: a
 *   paused Redis jumps its clock on resume, and the renewal gives a live owner a whole lock period to complete.
 * - `complete` token, metadata, body, record ms → 1 if `token` owns the key (record stored), else 0.
 * - `extend` token, lock ms → 1 if `token` owns the in-progress key (deadline moved), else 0.
 * - `release` token → 1 if `token` owns the in-progress key (record deleted), else 0.
 * - `get` → `{}`, `{'p', fingerprint, lock ms left}` or `{'c', fingerprint, metadata, body}`.
 * Records written before `d` existed keep their TTL as the lock, as they did.
 */
export const IDEMPOTENCY_LUA = `
local key = KEYS[1]
local op = ARGV[1]

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%.0f', n)
end

local function record()
  local v = redis.call('HMGET', key, 's', 'f', 'm', 'b', 'd')
  if not v[1] then return {} end
  if v[1] == 'p' then
    if not v[5] then return {'p', v[2], redis.call('PTTL', key)} end
    return {'p', v[2], math.max(0, tonumber(v[5]) - now())}
  end
  return {'c', v[2], v[3], v[4]}
end

local function owned(token)
  local v = redis.call('HMGET', key, 's', 't')
  return v[1] == 'p' and v[2] == token
end

if op == 'claim' then
  local v = redis.call('HMGET', key, 's', 'd', 'r')
  if v[1] then
    if v[1] ~= 'p' or not v[2] then return record() end
    local t = now()
    if t < tonumber(v[2]) then return record() end
    if not v[3] then
      redis.call('HSET', key, 'd', ms(t + tonumber(ARGV[4])), 'r', '1')
      return record()
    end
    redis.call('HDEL', key, 'r')
  end
  redis.call('HSET', key, 's', 'p', 't', ARGV[2], 'f', ARGV[3], 'd', ms(now() + tonumber(ARGV[4])))
  redis.call('PEXPIRE', key, ARGV[5])
  return {'claimed'}
elseif op == 'complete' then
  if not owned(ARGV[2]) then return 0 end
  redis.call('HSET', key, 's', 'c', 'm', ARGV[3], 'b', ARGV[4])
  redis.call('HDEL', key, 't', 'd', 'r')
  redis.call('PEXPIRE', key, ARGV[5])
  return 1
elseif op == 'extend' then
  if not owned(ARGV[2]) then return 0 end
  local deadline = now() + tonumber(ARGV[3])
  redis.call('HSET', key, 'd', ms(deadline))
  redis.call('HDEL', key, 'r')
  if redis.call('PTTL', key) < tonumber(ARGV[3]) then redis.call('PEXPIRE', key, ARGV[3]) end
  return 1
elseif op == 'release' then
  if not owned(ARGV[2]) then return 0 end
  redis.call('DEL', key)
  return 1
elseif op == 'get' then
  return record()
end
return redis.error_reply('unknown idempotency operation')
`
