// The rate-limit Lua script: every rule of a key decided atomically inside Redis, on Redis's clock, for any number
// of keys of one hash slot per call (the decisions of one event-loop turn).
// It mirrors @breakwater/core's rate-limit/algorithms.ts step for step; the store conformance suite holds them together.

/**
 * One call decides any number of groups, in order — the decisions of one event-loop turn, for any keys of one
 * hash slot. KEYS: the rule keys of every group, group after group. ARGV, group after group:
 * - the operation: `1` charge (consume), `0` only report (peek), `2` refund;
 * - `n`, the group's rule count (its keys are the next `n` of KEYS), then four values per rule: algorithm (`g`
 *   gcra, `f` fixed-window, `s` sliding-window), limit, window ms, burst;
 * - for `0`/`1`: `m`, then `m` pairs `cost, count` — the costs of the group's requests, run-length encoded (the
 *   store coalesces concurrent consumes of one key into one group, and the script decides them in order against
 *   the evolving state — exactly as if they had arrived one after another at the same instant — and writes the
 *   final state once);
 * - for `2`: the cost to give back and how many ms ago it was charged.
 * Each group reads the state the groups before it wrote, so one key's consumes then refunds keep their order.
 * Returns, for every group of `0`/`1` in order, three values per rule per request: allowed (1|0), remaining,
 * resetMs (as a string: Lua numbers become integers). Like the memory store, a denied decision charges nothing and the rules that would have allowed
 * report their state as it stays (evaluated again with cost 0).
 *
 * State: an upper-case algorithm letter followed by the slots algorithms.ts uses, as little-endian doubles
 * (`struct.pack`) — 1 for gcra, 2 for fixed-window, 3 for sliding-window. Binary doubles round-trip exactly and
 * cost no formatting or pattern matching. The text state of earlier versions (`"<g|f|s> <s0> <s1> <s2>"`, `%.17g`)
 * is still read, so an upgrade keeps every count.
 *
 * Differences from algorithms.ts are in the order of floating-point operations only. Times here are ms since the
 * epoch (~1.8e12), where a double resolves ~0.0002 ms — coarser than EPSILON (1e-6). So the script subtracts the
 * two epoch values first (exact for nearby doubles) and does the rest of the arithmetic on small numbers,
 * e.g. GCRA's `newTat − now` is computed as `max(tat − now, 0) + T·cost`. resetMs is returned with `%.17g`,
 * which round-trips a double exactly (Lua's default `%.14g` would round it).
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

local TAGS = { g = 'G', f = 'F', s = 'S' }
local FORMATS = { g = '<d', f = '<dd', s = '<ddd' }
local LENGTHS = { g = 9, f = 17, s = 25 }

-- The state slots of one rule; state written by another algorithm under the same rule name means nothing here.
local function load(raw, algorithm)
  if not raw then return 0, 0, 0 end
  local tag = string.sub(raw, 1, 1)
  if tag == TAGS[algorithm] then
    if #raw ~= LENGTHS[algorithm] then return 0, 0, 0 end
    if algorithm == 'g' then return (struct.unpack('<d', raw, 2)), 0, 0 end
    if algorithm == 'f' then
      local a, b = struct.unpack('<dd', raw, 2)
      return a, b, 0
    end
    local a, b, c = struct.unpack('<ddd', raw, 2)
    return a, b, c
  end
  if tag == algorithm then
    local _, x, y, z = string.match(raw, '^(%a) (%S+) (%S+) (%S+)$')
    return tonumber(x) or 0, tonumber(y) or 0, tonumber(z) or 0
  end
  return 0, 0, 0
end

local function store(key, algorithm, s0, s1, s2, ttl)
  ttl = math.ceil(ttl)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, TAGS[algorithm] .. struct.pack(FORMATS[algorithm], s0, s1, s2), 'PX', ttl)
end

local reply = {}
local r = 0

-- A refund of the keys k+1..k+n: give back cost units charged ago ms ago, as refund() in algorithms.ts does.
local function refund(k, n, a0, cost, ago)
  local stored = redis.call('MGET', unpack(KEYS, k + 1, k + n))
  for i = 1, n do
    local key = KEYS[k + i]
    local a = a0 + (i - 1) * 4
    local algorithm, limit, window = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local s0, s1, s2 = load(stored[i], algorithm)
    if algorithm == 'g' then
      local behind = s0 - now
      if behind > 0 then
        behind = behind - (window / limit) * cost
        if behind > 0 then store(key, algorithm, now + behind, 0, 0, behind) else redis.call('DEL', key) end
      end
    elseif algorithm == 'f' then
      local left = s0 - now
      if left > 0 then
        -- The window began no later than the charge (its start is left - window ms from now, the charge -ago).
        if left - window <= EPSILON - ago then s1 = math.max(0, s1 - cost) end
        store(key, algorithm, s0, s1, s2, left)
      end
    elseif stored[i] then
      local charged_index = math.floor((now - ago) / window)
      if charged_index == s0 then
        s1 = math.max(0, s1 - cost)
      elseif charged_index == s0 - 1 then
        s2 = math.max(0, s2 - cost)
      end
      local ttl = (s0 + 2) * window - now
      if ttl > 0 then store(key, algorithm, s0, s1, s2, ttl) end
    end
  end
end

-- The decisions of one group: keys k+1..k+n, rule values from ARGV[a0], cost pairs ARGV[first..last].
local function decide(k, n, a0, charge, first, last)
  if n == 1 then
    -- The common case, without tables: one rule, so a decision is denied exactly when that rule denies.
    local key = KEYS[k + 1]
    local algorithm, limit, window, burst = ARGV[a0], tonumber(ARGV[a0 + 1]), tonumber(ARGV[a0 + 2]),
      tonumber(ARGV[a0 + 3])
    local s0, s1, s2 = load(redis.call('GET', key), algorithm)
    local dirty, ttl = false, 0
    for j = first, last, 2 do
      local cost = tonumber(ARGV[j])
      local write = charge and cost > 0
      for _ = 1, tonumber(ARGV[j + 1]) do
        local ok, remaining, reset, n0, n1, n2, t = evaluate(algorithm, limit, window, burst, s0, s1, s2, cost)
        if ok and write then
          s0, s1, s2, ttl, dirty = n0, n1, n2, t, true
        end
        reply[r + 1] = ok and 1 or 0
        reply[r + 2] = remaining
        reply[r + 3] = string.format('%.17g', reset)
        r = r + 3
      end
    end
    if dirty then store(key, algorithm, s0, s1, s2, ttl) end
    return
  end

  local stored = redis.call('MGET', unpack(KEYS, k + 1, k + n))
  local algorithms, limits, windows, bursts, s0s, s1s, s2s, ttls = {}, {}, {}, {}, {}, {}, {}, {}
  for i = 1, n do
    local a = a0 + (i - 1) * 4
    local algorithm = ARGV[a]
    algorithms[i], limits[i], windows[i], bursts[i] = algorithm, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
      tonumber(ARGV[a + 3])
    s0s[i], s1s[i], s2s[i] = load(stored[i], algorithm)
  end
  local oks, remainings, resets, next0, next1, next2, nextTtls = {}, {}, {}, {}, {}, {}, {}
  local dirty = false

  for j = first, last, 2 do
    local cost = tonumber(ARGV[j])
    for _ = 1, tonumber(ARGV[j + 1]) do
      local allowed = true
      for i = 1, n do
        local ok, remaining, reset, n0, n1, n2, t = evaluate(algorithms[i], limits[i], windows[i], bursts[i], s0s[i],
          s1s[i], s2s[i], cost)
        oks[i], remainings[i], resets[i], next0[i], next1[i], next2[i], nextTtls[i] = ok, remaining, reset, n0, n1, n2, t
        if not ok then allowed = false end
      end
      if allowed then
        -- Two phases, as in the memory store: nothing is charged unless every rule allows.
        if charge and cost > 0 then
          for i = 1, n do
            s0s[i], s1s[i], s2s[i], ttls[i] = next0[i], next1[i], next2[i], nextTtls[i]
          end
          dirty = true
        end
      else
        -- Nothing is charged, so the rules that would have allowed report their state as it stays.
        for i = 1, n do
          if oks[i] then
            local _, remaining, reset = evaluate(algorithms[i], limits[i], windows[i], bursts[i], s0s[i], s1s[i], s2s[i], 0)
            remainings[i], resets[i] = remaining, reset
          end
        end
      end
      for i = 1, n do
        reply[r + 1] = oks[i] and 1 or 0
        reply[r + 2] = remainings[i]
        reply[r + 3] = string.format('%.17g', resets[i])
        r = r + 3
      end
    end
  end

  if dirty then
    for i = 1, n do store(KEYS[k + i], algorithms[i], s0s[i], s1s[i], s2s[i], ttls[i]) end
  end
end

-- The groups, in order: each one reads the state the ones before it wrote.
local k, a, nargs = 0, 1, #ARGV
while a <= nargs do
  local op, n = ARGV[a], tonumber(ARGV[a + 1])
  local a0 = a + 2
  a = a0 + 4 * n
  if op == '2' then
    refund(k, n, a0, tonumber(ARGV[a]), tonumber(ARGV[a + 1]))
    a = a + 2
  else
    local pairs_end = a + 2 * tonumber(ARGV[a])
    decide(k, n, a0, op == '1', a + 1, pairs_end)
    a = pairs_end + 1
  end
  k = k + n
end
return reply
`
