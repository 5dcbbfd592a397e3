-- Sends a dead letter back to the end of its lane as a fresh command.
-- ARGV: id, client id, client reference. Returns 'ok', 'not_dead' or 'unknown_lane'.
local id = ARGV[1]
local packed = redis.call('HGET', DONE, id)
if not packed then
  return 'not_dead'
end
local entry, state = unpack_record(packed)
if state ~= 'dead' then
  return 'not_dead'
end
local lane, _, _, _, _, _, rest = string.match(entry, HEAD)
if not lane_cfg(lane) then
  return 'unknown_lane'
end
redis.call('ZREM', P .. ':dead', id)
redis.call('ZREM', dead_key(lane), id)
redis.call('HDEL', DONE, id)
-- A fresh command: no runs yet, submitted now.
redis.call('HSET', ENTRIES, id, entry_head(lane, 0, 0, ARGV[2], ARGV[3], clock_ms()) .. '\n'
  .. string.sub(entry, rest))
push_pending(lane, id, false)
event3('S', id, lane, entry_type(entry))
stamp_pending(lane, {id})
refresh(lane, false)
flush(1)
if redis.call('ZSCORE', READY, lane) then
  wake_idle(1)
end
return 'ok'
