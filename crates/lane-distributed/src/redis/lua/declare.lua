-- Declares (or updates) a lane. ARGV: lane, priority, max concurrency, rate limit kind
-- ('' none, 'tb' token bucket, 'sw' sliding window), rate, period (us), burst.
-- A changed rate limit starts over with a full bucket; an unchanged one keeps its state.
local lane = ARGV[1]
local lk = P .. ':lane:' .. lane
local old = redis.call('HMGET', lk, 'rl', 'rl_n', 'rl_period', 'rl_burst')
if old[1] ~= ARGV[4] or old[2] ~= ARGV[5] or old[3] ~= ARGV[6] or old[4] ~= ARGV[7] then
  redis.call('HDEL', lk, 'tat')
  redis.call('DEL', P .. ':window:' .. lane)
end
redis.call('HSET', lk, 'priority', ARGV[2], 'max', ARGV[3], 'rl', ARGV[4],
  'rl_n', ARGV[5], 'rl_period', ARGV[6], 'rl_burst', ARGV[7])
redis.call('HSET', P .. ':lanes', lane, ARGV[2])
refresh(lane, false)
flush(1)
if redis.call('ZSCORE', P .. ':ready', lane) then
  wake_idle(1)
end
return 'ok'
