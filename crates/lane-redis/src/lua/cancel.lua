-- Cancels a command. ARGV: id, result ttl (ms), the error JSON a cancelled command ends with.
-- Returns 'cancelled' (it was pending or delayed and ended now), 'signalled' (it runs; the
-- durable flag and the worker's cancel set reach the worker), 'finished' or 'unknown'.
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local worker = redis.call('HGET', OWNER, id)
if worker then
  redis.call('SADD', CANCEL, id)
  redis.call('SADD', P .. ':wcancel:' .. worker, id)
  redis.call('LPUSH', P .. ':wake:' .. worker, 'c')
  return 'signalled'
end
local entry = redis.call('HGET', ENTRIES, id)
if entry then
  local lane = entry_lane(entry)
  if redis.call('ZREM', P .. ':delayed', id) == 0 then
    redis.call('LREM', P .. ':q:' .. lane, 1, id)
  end
  stat('cancelled')
  finish(id, 'cancelled', 'err', ARGV[3], now_us(), entry, nil, nil)
  refresh(lane, false)
  flush(ttl)
  return 'cancelled'
end
if redis.call('HEXISTS', DONE, id) == 1 then
  return 'finished'
end
return 'unknown'
