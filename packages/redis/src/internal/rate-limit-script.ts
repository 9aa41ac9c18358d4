// The rate-limit Lua script: every rule of one key decided atomically inside Redis, on Redis's clock.
// It mirrors @breakwater/core's rate-limit/algorithms.ts step for step; the store conformance suite holds them together.

/**
 * KEYS[i]: the state of rule i, a string `"<algorithm> <s0> <s1> <s2>"` (the three slots of algorithms.ts).
 * ARGV[1]: cost. ARGV[2]: `1` to charge (consume), `0` to only report (peek).
 * Then four values per rule: algorithm (`g` gcra, `f` fixed-window, `s` sliding-window), limit, window ms, burst.
 * Returns three values per rule: allowed (1|0), remaining, resetMs (as a string: Lua numbers become integers).
 * Like the memory store, a denied decision charges nothing and the rules that would have allowed report their
 * state as it stays (evaluated again with cost 0).
 *
 * Differences from algorithms.ts are in the order of floating-point operations only. Times here are ms since the
 * epoch (~1.8e12), where a double resolves ~0.0002 ms — coarser than EPSILON (1e-6). So the script subtracts the
 * two epoch values first (exact for nearby doubles) and does the rest of the arithmetic on small numbers,
 * e.g. GCRA's `newTat − now` is computed as `max(tat − now, 0) + T·cost`. Stored numbers use `%.17g`, which
 * round-trips a double exactly (Lua's default `%.14g` would round epochs to 0.1 ms).
 */
export const RATE_LIMIT_LUA = `
if redis.replicate_commands then redis.replicate_commands() end
local EPSILON = 1e-6
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

local function sliding_retry_after(limit, window, elapsed, current, previous, cost)
  if cost > limit then return 2 * window end
  local excess = previous * (1 - elapsed / window) + current + cost - limit
  if previous > 0 then
    local wait = (excess * window) / previous
    if wait <= window - elapsed then return math.max(1, math.ceil(wait)) end
  end
  local until_roll = window - elapsed
  if current + cost <= limit then return math.max(1, math.ceil(until_roll)) end
  return math.ceil(until_roll + window * (1 - (limit - cost) / current))
end

-- One rule: returns allowed, remaining, resetMs, the three next state slots, and ms until that state expires.
local function evaluate(algorithm, limit, window, burst, s0, s1, s2, cost)
  if algorithm == 'g' then
    local interval = window / limit
    local tolerance = interval * burst
    local behind = s0 - now
    if behind < 0 then behind = 0 end
    local ahead = behind + interval * cost
    if ahead <= tolerance + EPSILON then
      return true, math.max(0, math.floor((tolerance - ahead) / interval + EPSILON)), ahead, now + ahead, 0, 0, ahead
    end
    return false, math.max(0, math.floor((tolerance - behind) / interval + EPSILON)), ahead - tolerance, s0, 0, 0,
      behind
  elseif algorithm == 'f' then
    local window_end, count, left = s0, s1, 0
    if now >= window_end then
      window_end = now + window
      count = 0
      left = window
    else
      left = window_end - now
    end
    if count + cost <= limit then
      return true, limit - count - cost, left, window_end, count + cost, 0, left
    end
    return false, math.max(0, limit - count), left, window_end, count, 0, left
  end
  local index, current, previous = s0, s1, s2
  local now_index = math.floor(now / window)
  if index ~= now_index then
    if index == now_index - 1 then previous = current else previous = 0 end
    current = 0
  end
  local elapsed = now - now_index * window
  local estimate = previous * (1 - elapsed / window) + current
  local ttl = 2 * window - elapsed
  if estimate + cost <= limit + EPSILON then
    local charged = current + cost
    local reset = 0
    if charged > 0 then
      reset = 2 * window - elapsed
    elseif previous > 0 then
      reset = window - elapsed
    end
    return true, math.max(0, math.floor(limit - estimate - cost + EPSILON)), reset, now_index, charged, previous, ttl
  end
  return false, math.max(0, math.floor(limit - estimate + EPSILON)),
    sliding_retry_after(limit, window, elapsed, current, previous, cost), now_index, current, previous, ttl
end

local cost = tonumber(ARGV[1])
local charge = ARGV[2] == '1'
local n = #KEYS
local stored = redis.call('MGET', unpack(KEYS))
local params, states = {}, {}
local oks, remainings, resets, next0, next1, next2, ttls = {}, {}, {}, {}, {}, {}, {}
local allowed = true

for i = 1, n do
  local a = 3 + (i - 1) * 4
  local p = { ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]) }
  local s0, s1, s2 = 0, 0, 0
  local raw = stored[i]
  if raw then
    local tag, x, y, z = string.match(raw, '^(%a) (%S+) (%S+) (%S+)$')
    -- State written by another algorithm under the same rule name means nothing to this one.
    if tag == p[1] then
      s0, s1, s2 = tonumber(x) or 0, tonumber(y) or 0, tonumber(z) or 0
    end
  end
  params[i], states[i] = p, { s0, s1, s2 }
  local ok, remaining, reset, n0, n1, n2, ttl = evaluate(p[1], p[2], p[3], p[4], s0, s1, s2, cost)
  oks[i], remainings[i], resets[i], ttls[i] = ok, remaining, reset, ttl
  next0[i], next1[i], next2[i] = n0, n1, n2
  if not ok then allowed = false end
end

if allowed then
  -- Two phases, as in the memory store: nothing is written unless every rule allows.
  if charge and cost > 0 then
    for i = 1, n do
      local ttl = math.ceil(ttls[i])
      if ttl < 1 then ttl = 1 end
      local value = params[i][1] .. ' ' .. string.format('%.17g', next0[i]) .. ' ' ..
        string.format('%.17g', next1[i]) .. ' ' .. string.format('%.17g', next2[i])
      redis.call('SET', KEYS[i], value, 'PX', string.format('%.0f', ttl))
    end
  end
else
  -- Nothing is charged, so the rules that would have allowed report their state as it stays.
  for i = 1, n do
    if oks[i] then
      local p, s = params[i], states[i]
      local _, remaining, reset = evaluate(p[1], p[2], p[3], p[4], s[1], s[2], s[3], 0)
      remainings[i], resets[i] = remaining, reset
    end
  end
end

local reply = {}
for i = 1, n do
  reply[#reply + 1] = oks[i] and 1 or 0
  reply[#reply + 1] = remainings[i]
  reply[#reply + 1] = string.format('%.17g', resets[i])
end
return reply
`
