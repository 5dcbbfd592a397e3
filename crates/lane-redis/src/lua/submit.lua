-- Accepts commands at the back of their lanes, once per submitter reference.
-- ARGV: client id, result ttl (ms); the number of references whose ids the client
-- received, then those references; the number of references the client gave up on (it
-- told its caller the submit failed), then those; then 4 fields per command: client
-- reference, lane, type, JSON payload.
-- Returns {ids, known lanes}; an id of 0 means the command's lane is not declared, -1
-- that the client gave up on the reference before this call arrived.
--
-- P:refs:<client> maps each reference to its command id until the client says it
-- received the id, so a submit sent again after a lost reply finds its command instead
-- of adding a second one. A reference given up on is marked 'void': its command, if
-- Redis accepted it after all, is cancelled, and a late copy of the call is refused.
local client = ARGV[1]
local ttl = tonumber(ARGV[2])
local REFS = P .. ':refs:' .. client
local at = 3
local nacked = tonumber(ARGV[at])
if nacked > 0 then
  local acked = {}
  for j = 1, nacked do
    acked[j] = ARGV[at + j]
  end
  call_sliced('HDEL', REFS, acked)
end
at = at + nacked + 1
local nvoid = tonumber(ARGV[at])
for j = 1, nvoid do
  local cref = ARGV[at + j]
  local id = redis.call('HGET', REFS, cref)
  if id and id ~= 'void' then
    cancel_command(id,
      '{"kind":"cancelled","message":"withdrawn: Redis did not answer its submit in time and the submitter reported it as failed"}')
  end
  redis.call('HSET', REFS, cref, 'void')
end
at = at + nvoid + 1
local n = (#ARGV - at + 1) / 4
local crefs = {}
for j = 0, n - 1 do
  crefs[j + 1] = ARGV[at + j * 4]
end
local seen = {}
if n > 0 then
  seen = hmget_all(REFS, crefs)
end
local accepted = 0
for j = 0, n - 1 do
  if not seen[j + 1] and lane_cfg(ARGV[at + j * 4 + 1]) then
    accepted = accepted + 1
  end
end
local next_id = 0
if accepted > 0 then
  next_id = redis.call('INCRBY', P .. ':seq', accepted) - accepted + 1
end
local ids = {}
local entries = {}
local refs = {}
local by_lane = {}
local lanes = {}
for j = 0, n - 1 do
  local base = at + j * 4
  local lane = ARGV[base + 1]
  local known_id = seen[j + 1]
  if known_id == 'void' then
    ids[#ids + 1] = -1
  elseif known_id then
    ids[#ids + 1] = tonumber(known_id)
  elseif lane_cfg(lane) then
    local id = next_id
    next_id = next_id + 1
    entries[#entries + 1] = id
    entries[#entries + 1] = entry_value(lane, 0, 0, client, ARGV[base], ARGV[base + 2], ARGV[base + 3])
    refs[#refs + 1] = ARGV[base]
    refs[#refs + 1] = id
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
if #refs > 0 or nvoid > 0 then
  if #refs > 0 then
    call_sliced('HSET', REFS, refs)
  end
  redis.call('PEXPIRE', REFS, ttl)
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
