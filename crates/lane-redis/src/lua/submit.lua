-- Accepts commands at the back of their lanes.
-- ARGV: client id, result ttl (ms), then 4 fields per command: client reference, lane,
-- type, JSON payload.
-- Returns {ids, known lanes}; an id of 0 means the command's lane is not declared.
local client = ARGV[1]
local ttl = tonumber(ARGV[2])
local n = (#ARGV - 2) / 4
local accepted = 0
for j = 0, n - 1 do
  if lane_cfg(ARGV[3 + j * 4 + 1]) then
    accepted = accepted + 1
  end
end
local next_id = 0
if accepted > 0 then
  next_id = redis.call('INCRBY', P .. ':seq', accepted) - accepted + 1
end
local ids = {}
local entries = {}
local by_lane = {}
local lanes = {}
for j = 0, n - 1 do
  local base = 3 + j * 4
  local lane = ARGV[base + 1]
  if lane_cfg(lane) then
    local id = next_id
    next_id = next_id + 1
    entries[#entries + 1] = id
    entries[#entries + 1] = entry_value(lane, 0, 0, client, ARGV[base], ARGV[base + 2], ARGV[base + 3])
    local list = by_lane[lane]
    if not list then
      list = {}
      by_lane[lane] = list
      lanes[#lanes + 1] = lane
    end
    list[#list + 1] = id
    ids[#ids + 1] = id
    event3('S', id, lane, ARGV[base + 2])
  else
    ids[#ids + 1] = 0
  end
end
if accepted > 0 then
  call_sliced('HSET', ENTRIES, entries)
end
for _, lane in ipairs(lanes) do
  call_sliced('RPUSH', P .. ':q:' .. lane, by_lane[lane])
  stamp_pending(lane, by_lane[lane])
  refresh(lane, false)
end
local known = {}
if accepted < n then
  known = redis.call('HKEYS', P .. ':lanes')
end
if accepted > 0 then
  stat('submitted', accepted)
  if redis.call('ZCARD', READY) > 0 then
    wake_idle(accepted)
  end
end
flush(ttl)
return {ids, known}
