-- A worker leaves: whatever it still holds goes back to the front of its lanes.
-- ARGV: worker id, result ttl (ms).
local ttl = tonumber(ARGV[2])
remove_worker(ARGV[1], now_us())
flush(ttl)
local ready = redis.call('ZCARD', READY)
if ready > 0 then
  wake_idle(ready)
end
return 'ok'
