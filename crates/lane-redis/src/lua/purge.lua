-- Deletes every dead letter: its record and its place in the dead sets (the queue's and
-- its lane's). Returns how many there were.
local dead = P .. ':dead'
local ids = redis.call('ZRANGE', dead, 0, -1)
if #ids > 0 then
  call_sliced('HDEL', DONE, ids)
  if any_grouped() then
    call_sliced('HDEL', GROUP_OF, ids)
  end
end
redis.call('DEL', dead)
for _, lane in ipairs(redis.call('HKEYS', P .. ':lanes')) do
  redis.call('DEL', dead_key(lane))
end
return #ids
