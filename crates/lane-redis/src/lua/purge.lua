-- Deletes every dead letter: its record and its place in the dead set.
-- Returns how many there were.
local dead = P .. ':dead'
local ids = redis.call('ZRANGE', dead, 0, -1)
if #ids > 0 then
  call_sliced('HDEL', DONE, ids)
end
redis.call('DEL', dead)
return #ids
