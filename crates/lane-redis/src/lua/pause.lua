-- Pauses or resumes a lane for every worker. ARGV: lane, mode ('pause', 'pause_for',
-- 'resume'), duration (us, for 'pause_for'). A timed pause never shortens an existing one.
local lane = ARGV[1]
local c = lane_cfg(lane)
if not c then
  return 'unknown'
end
local mode = ARGV[2]
if mode == 'pause' then
  redis.call('HSET', P .. ':lane:' .. lane, 'paused', '1')
  c.paused = true
elseif mode == 'pause_for' then
  local untill = now_us() + tonumber(ARGV[3])
  local current = redis.call('ZSCORE', THROTTLED, lane)
  if not current or tonumber(current) < untill then
    throttle(lane, untill)
  end
else
  redis.call('HDEL', P .. ':lane:' .. lane, 'paused')
  c.paused = false
  unthrottle(lane)
end
refresh(lane, false)
flush(1)
if redis.call('ZSCORE', READY, lane) then
  wake_idle(1)
elseif mode == 'pause_for' then
  -- Idle workers look again when the pause ends.
  wake_idle(redis.call('SCARD', P .. ':idle'))
end
return 'ok'
