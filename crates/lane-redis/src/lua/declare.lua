-- Declares (or updates) a lane. ARGV: lane, priority, max concurrency, rate limit kind
-- ('' none, 'tb' token bucket, 'sw' sliding window), rate, period (us), burst, boost
-- deadline (us, '' for no boost), boost steps ('time before the deadline (us):boost',
-- comma separated), run settings (JSON: timeout, cancel grace, retry policy; read by
-- the workers with each claim), max waiting commands ('' unbounded), what a submit to a
-- full lane does ('reject' or 'wait'), the longest wait in ms ('' as long as it takes),
-- the retention: finished commands kept per final state, and for how long (us); the
-- group limits (JSON, see lane_cfg; '' for none).
-- A changed rate limit starts over with a full bucket; an unchanged one keeps its state.
-- A smaller retention applies to lookups at once; the records it no longer shows go
-- as commands finish and expire (see the prelude).
local lane = ARGV[1]
local lk = P .. ':lane:' .. lane
local old = redis.call('HMGET', lk, 'rl', 'rl_n', 'rl_period', 'rl_burst')
if old[1] ~= ARGV[4] or old[2] ~= ARGV[5] or old[3] ~= ARGV[6] or old[4] ~= ARGV[7] then
  redis.call('HDEL', lk, 'tat')
  redis.call('DEL', P .. ':window:' .. lane)
end
redis.call('HSET', lk, 'priority', ARGV[2], 'max', ARGV[3], 'rl', ARGV[4],
  'rl_n', ARGV[5], 'rl_period', ARGV[6], 'rl_burst', ARGV[7], 'run', ARGV[10],
  'keep_last', ARGV[14], 'keep_for', ARGV[15])
redis.call('HSET', P .. ':lanes', lane, ARGV[2])
-- Group limits (ARGV[16], JSON, '' for none; see lane_cfg). Groups held back by a cap
-- the new limits raise take turns again.
if ARGV[16] and ARGV[16] ~= '' then
  redis.call('HSET', lk, 'groups', ARGV[16])
else
  redis.call('HDEL', lk, 'groups')
end
lane_cache[lane] = nil
for _, g in ipairs(redis.call('ZRANGE', gknown_key(lane), 0, -1)) do
  group_enter_ring(lane, g)
end
if ARGV[11] ~= '' then
  redis.call('HSET', lk, 'max_waiting', ARGV[11], 'when_full', ARGV[12], 'wait_ms', ARGV[13])
else
  redis.call('HDEL', lk, 'max_waiting', 'when_full', 'wait_ms')
end
local was_boosted = redis.call('SISMEMBER', BOOSTED, lane) == 1
local pending = {}
if (ARGV[8] ~= '') ~= was_boosted then
  pending = redis.call('LRANGE', P .. ':q:' .. lane, 0, -1)
end
if ARGV[8] ~= '' then
  redis.call('HSET', lk, 'boost_deadline', ARGV[8], 'boost_steps', ARGV[9])
  redis.call('SADD', BOOSTED, lane)
  if not was_boosted then
    -- When they became pending is unknown: their wait counts from now.
    stamp_pending(lane, pending)
  end
else
  redis.call('HDEL', lk, 'boost_deadline', 'boost_steps')
  redis.call('SREM', BOOSTED, lane)
  if was_boosted and #pending > 0 then
    call_sliced('HDEL', SINCE, pending)
  end
end
refresh(lane, false)
flush(1)
if redis.call('ZSCORE', P .. ':ready', lane) then
  wake_idle(1)
end
return 'ok'
