-- A command as it is now. ARGV: id.
-- Returns the command as describe_live / describe_record put it (8 fields), or an empty
-- array when Redis knows nothing of it that a lookup may show: a finished command its
-- lane no longer keeps (see record_visible) is unknown, even if its record is still
-- there.
local id = ARGV[1]
local out = {}
local entry = redis.call('HGET', ENTRIES, id)
if entry then
  local worker = redis.call('HGET', OWNER, id)
  if worker then
    describe_live(out, id, 'running', entry, worker,
      redis.call('HGET', P .. ':w:' .. worker, id) or '')
  elseif redis.call('ZSCORE', DELAYED, id) then
    describe_live(out, id, 'delayed', entry)
  else
    describe_live(out, id, 'pending', entry)
  end
  return out
end
local packed = redis.call('HGET', DONE, id)
if packed then
  describe_record(out, id, packed)
  if not record_visible(id, out[2], entry_lane(out[3]), tonumber(out[6]), clock()) then
    out = {}
  end
end
return out
