-- Deletes dead letters: their records and their places in the dead sets (the queue's and
-- their lanes'). ARGV: a command id to delete only its dead letter (none: every one).
-- Returns how many were deleted.
local dead = P .. ':dead'
if ARGV[1] then
  local id = ARGV[1]
  if not redis.call('ZSCORE', dead, id) then
    return 0
  end
  local packed = redis.call('HGET', DONE, id)
  if packed then
    local entry = unpack_record(packed)
    local lane = string.match(entry, HEAD)
    if lane then
      redis.call('ZREM', dead_key(lane), id)
    end
  end
  redis.call('ZREM', dead, id)
  redis.call('HDEL', DONE, id)
  if any_grouped() then
    redis.call('HDEL', GROUP_OF, id)
  end
  return 1
end
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
