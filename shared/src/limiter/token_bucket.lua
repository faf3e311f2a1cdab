-- Per-account token bucket with priority headroom and deferral spreading.
-- One call decides one message. Every key shares the account's hash tag, so
-- the script runs on Redis Cluster. Its Rust twin is limiter::bucket::decide;
-- a test runs both on the same inputs and compares.
--
-- KEYS[1] bucket   hash {tokens, ts, credit}: tokens at time ts (microseconds);
--                  credit: refill lost while it stood full (see ARGV[7])
-- KEYS[2] horizon  string: the next free deferral slot for this priority class (us)
-- KEYS[3] pause    string: set when the upstream answered 429; its PTTL is the wait
-- KEYS[4] limits   hash {perMinute, burst}: the account's own limit, set by an
--                  operator (PUT /v1/admin/accounts/{a}/limits); absent (or
--                  not a valid limit) means the defaults below. Read here, in
--                  the same call, so a change applies to the next decision of
--                  every instance at no extra round trip.
-- ARGV[1] default rate per minute (> 0)
-- ARGV[2] default burst (bucket capacity, >= 1)
-- ARGV[3] reserve percent: share of the burst in force that must remain
--         after this take (0 for high priority), floored, at most burst - 1
-- ARGV[4] client clock in microseconds, or 0 to use Redis TIME (the default:
--         one clock for every Lambda instance)
-- ARGV[5] key TTL in milliseconds
-- ARGV[6] 1 when the message holds a slot this class's horizon gave it
--         earlier (it comes back at that slot), else 0
-- ARGV[7] when the message was due (accepted, or its sendAt), microseconds,
--         or 0 if unknown. A send that finds the bucket full credits it with
--         the refill lost to the cap since then (at most what the class
--         keeps beyond the guard); until the bucket is full again the
--         reserving classes keep that much less of their reserve, so a
--         backlog's slots do not all carry the delay between its first
--         message's acceptance and its first send. Every send still leaves
--         the guard: the contract's curve is kept.
--
-- Returns {allowed (1|0), wait_us, tokens_after_milli, now_us, reason,
--          per_minute_milli, burst} (the last two: the limit in force)
-- reason: 0 allowed, 1 throttled, 2 paused (upstream Retry-After)
-- tokens_after_milli is below zero while a bucket too small to keep the
-- guard owes it (see ARRIVAL_SPREAD_US below).

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local own = redis.call('HMGET', KEYS[4], 'perMinute', 'burst')
local own_rate = tonumber(own[1])
local own_burst = tonumber(own[2])
if own_rate ~= nil and own_burst ~= nil and own_rate > 0 and own_burst >= 1
    and own_burst == math.floor(own_burst) then
  rate = own_rate
  burst = own_burst
end
local reserve = math.min(math.floor(burst * tonumber(ARGV[3]) / 100), burst - 1)
local client_now = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local held = tonumber(ARGV[6]) == 1
local due = tonumber(ARGV[7]) or 0 -- absent from callers that predate it
-- Numbers are written with string.format: tostring keeps only 14 digits,
-- and a microsecond timestamp has 16.

local now
if client_now > 0 then
  now = client_now
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'credit')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local credit = tonumber(state[3]) or 0
local fresh = tokens == nil or ts == nil
if fresh then
  tokens = burst
  ts = now
end
local stored = tokens
-- Time never runs backwards for a bucket: a caller whose clock lags (client
-- clock mode) or a Redis failover cannot mint tokens by rewinding.
if now < ts then
  now = ts
end

local per_us = rate / 60000000
-- How late a message may come back to its slot (SQS counts visibility in
-- whole seconds, and the trigger batches for up to a second).
local LATE_US = 2000000
tokens = math.min(burst, tokens + (now - ts) * per_us)
-- A full bucket holds no credit: it has nothing left to make up.
local full = tokens >= burst
if full then
  credit = 0
end

local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then
  return {0, pause * 1000, math.floor(tokens * 1000), now, 2, math.floor(rate * 1000), burst}
end

-- Every send leaves what refill adds in ARRIVAL_SPREAD_US, whatever its
-- class: the upstream counts arrivals, and two calls granted an interval
-- apart may arrive that much closer (their latencies differ). A bucket too
-- small to keep it (a burst of 1) is asked for what it holds when full and
-- owes the rest (tokens below zero): its sends are spaced by the spread
-- beyond an interval.
local ARRIVAL_SPREAD_US = 100000
local guard = ARRIVAL_SPREAD_US * per_us
local need = 1 + math.max(reserve - credit, guard)
local take = 1
if need > burst then
  take = 1 + need - burst
  need = burst
end
-- What refill takes to give back one send's take: the spacing of slots.
local interval = math.ceil(take / per_us)
-- First come, first served within a priority class: while slots handed out
-- earlier are still ahead (the horizon lies in the future), a message that
-- holds none queues behind them even if the bucket has a token right now,
-- since that token belongs to the message whose slot it is. A message that
-- holds a slot takes the token it was promised. Tokens beyond what the
-- holders due can use (one, plus what accrues while a holder is up to
-- LATE_US late) belong to slots nobody came for (a cancelled or lost
-- message): a newcomer may take those.
local horizon = tonumber(redis.call('GET', KEYS[2]))
local spare = tokens - need - 1 - LATE_US * per_us
local queued = (not held) and horizon ~= nil and horizon > now and spare < 0
if tokens >= need and not queued then
  tokens = tokens - take
  if full and due > 0 then
    -- When the stored tokens reached the cap (a missing bucket always was).
    local start = due
    if not fresh then
      start = math.max(ts + math.max(0, burst - stored) / per_us, due)
    end
    credit = 0
    if start < now then
      credit = math.min((now - start) * per_us, math.max(0, reserve - guard))
    end
  end
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', now),
    'credit', string.format('%.17g', credit))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, 0, math.floor(tokens * 1000), now, 0, math.floor(rate * 1000), burst}
end

-- Denied. The bucket is not written: its state at `now` is derivable.
local wait = math.ceil(math.max(0, need - tokens) / per_us)
if held then
  -- Its slot came and the token is not there yet (a clock a little ahead,
  -- or a higher class took it): the exact wait, and no new slot.
  return {0, wait, math.floor(tokens * 1000), now, 1, math.floor(rate * 1000), burst}
end
-- The horizon spreads deferred messages one send's refill apart, so a
-- backlog does not come back all at once to be denied again.
local slot = now + wait
if horizon ~= nil and horizon > slot then
  slot = horizon
end
local next_free = slot + interval
redis.call('SET', KEYS[2], string.format('%.0f', next_free), 'PX', math.ceil((next_free - now) / 1000) + ttl)
return {0, slot - now, math.floor(tokens * 1000), now, 1, math.floor(rate * 1000), burst}
