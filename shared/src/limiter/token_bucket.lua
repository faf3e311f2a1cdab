-- Per-account token bucket with priority headroom and deferral spreading.
-- One call decides one message. Every key shares the account's hash tag, so
-- the script runs on Redis Cluster. Its Rust twin is limiter::bucket::decide;
-- a test runs both on the same inputs and compares.
--
-- KEYS[1] bucket   hash {tokens, ts}: tokens at time ts (microseconds)
-- KEYS[2] horizon  string: the next free deferral slot for this priority class (us)
-- KEYS[3] pause    string: set when the upstream answered 429; its PTTL is the wait
-- ARGV[1] rate per minute (> 0)
-- ARGV[2] burst (bucket capacity, >= 1)
-- ARGV[3] reserve: tokens that must remain after this take (0 for high priority)
-- ARGV[4] client clock in microseconds, or 0 to use Redis TIME (the default:
--         one clock for every Lambda instance)
-- ARGV[5] key TTL in milliseconds
--
-- Returns {allowed (1|0), wait_us, tokens_after_milli, now_us, reason}
-- reason: 0 allowed, 1 throttled, 2 paused (upstream Retry-After)

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local client_now = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
-- Numbers are written with string.format: tostring keeps only 14 digits,
-- and a microsecond timestamp has 16.

local now
if client_now > 0 then
  now = client_now
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
-- Time never runs backwards for a bucket: a caller whose clock lags (client
-- clock mode) or a Redis failover cannot mint tokens by rewinding.
if now < ts then
  now = ts
end

local per_us = rate / 60000000
tokens = math.min(burst, tokens + (now - ts) * per_us)
local interval = math.ceil(1 / per_us)

local pause = redis.call('PTTL', KEYS[3])
if pause > 0 then
  return {0, pause * 1000, math.floor(tokens * 1000), now, 2}
end

local need = 1 + reserve
if tokens >= need then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, 0, math.floor(tokens * 1000), now, 0}
end

-- Denied. The bucket is not written: its state at `now` is derivable.
-- The horizon spreads deferred messages one refill interval apart, so a
-- backlog does not come back all at once to be denied again.
local wait = math.ceil((need - tokens) / per_us)
local slot = now + wait
local horizon = tonumber(redis.call('GET', KEYS[2]))
if horizon ~= nil and horizon > slot then
  slot = horizon
end
local next_free = slot + interval
redis.call('SET', KEYS[2], string.format('%.0f', next_free), 'PX', math.ceil((next_free - now) / 1000) + ttl)
return {0, slot - now, math.floor(tokens * 1000), now, 1}
