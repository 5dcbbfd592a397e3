-- A lane's commands in one state, paged. ARGV: lane, state ('pending', 'delayed',
-- 'running', 'done', 'cancelled', 'expired', 'dead', or any other name, which lists
-- nothing), offset, limit.
-- Returns {'unknown_lane'} for a lane not declared, else {'ok', commands}, each command
-- 8 fields as describe_live / describe_record put them. Pending commands come in the
-- order they start (the lane's list, or its groups taking turns), delayed ones by due time, running ones by claim
-- time, finished ones and dead letters newest first; finished ones only while their
-- lane keeps them (record_visible).
local lane = ARGV[1]
local state = ARGV[2]
local offset = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local c = lane_cfg(lane)
if not c then
  return {'unknown_lane'}
end
local now = clock()
local out = {}

if state == 'pending' then
  local q = P .. ':q:' .. lane
  local ids
  if group_pending_total(lane) <= 0 then
    ids = redis.call('LRANGE', q, offset, offset + limit - 1)
  else
    -- In the order they would start if nothing changed: the groups that may start take
    -- turns (in the ring's order; the commands of no group are one of them), then the
    -- groups held back (paused, at their cap, throttled), by key.
    local need = offset + limit
    local turns = {}
    local seen = {}
    local function add_turn(g)
      if seen[g] then
        return
      end
      seen[g] = true
      local key = g == '' and q or gq_key(lane, g)
      local list = redis.call('LRANGE', key, 0, need - 1)
      if #list > 0 then
        turns[#turns + 1] = list
      end
    end
    local ring = redis.call('LRANGE', gring_key(lane), 0, -1)
    -- The group that had the last turn goes behind the others (see exchange.lua).
    local first = 1
    if #ring > 1 and ring[1] == redis.call('HGET', P .. ':lane:' .. lane, 'gserved') then
      first = 2
    end
    for j = 0, #ring - 1 do
      local g = ring[(first - 1 + j) % #ring + 1]
      if g == '' or group_may_start(lane, g) then
        add_turn(g)
      end
    end
    add_turn('')
    local ordered = {}
    local round = 1
    local more = true
    while more and #ordered < need do
      more = false
      for _, list in ipairs(turns) do
        if list[round] then
          ordered[#ordered + 1] = list[round]
          more = true
        end
      end
      round = round + 1
    end
    if #ordered < need then
      for _, g in ipairs(redis.call('ZRANGE', gknown_key(lane), 0, -1)) do
        if not seen[g] then
          local part = redis.call('LRANGE', gq_key(lane, g), 0, need - #ordered - 1)
          for _, id in ipairs(part) do
            ordered[#ordered + 1] = id
          end
          if #ordered >= need then
            break
          end
        end
      end
    end
    ids = {}
    for j = offset + 1, math.min(need, #ordered) do
      ids[#ids + 1] = ordered[j]
    end
  end
  local entries = hmget_all(ENTRIES, ids)
  for j, id in ipairs(ids) do
    if entries[j] then
      describe_live(out, id, 'pending', entries[j])
    end
  end
elseif state == 'delayed' then
  -- The queue's delayed set, in due order, filtered by lane; the lane's count of delayed
  -- commands ends the walk once all of them were seen.
  local left = tonumber(redis.call('HGET', P .. ':lane:' .. lane, 'delayed') or '0')
  local skip = offset
  local at = 0
  while left > 0 and #out < limit * 8 do
    local ids = redis.call('ZRANGE', DELAYED, at, at + 255)
    if #ids == 0 then
      break
    end
    at = at + #ids
    local entries = hmget_all(ENTRIES, ids)
    for j, id in ipairs(ids) do
      local entry = entries[j]
      if entry and entry_lane(entry) == lane and left > 0 and #out < limit * 8 then
        left = left - 1
        if skip > 0 then
          skip = skip - 1
        else
          describe_live(out, id, 'delayed', entry)
        end
      end
    end
  end
elseif state == 'running' then
  -- Every running command of the queue has an owner; the lane's are sorted by claim
  -- time, then fencing token (claims of one round trip share their time).
  if lane_active(lane) > 0 then
    local owners = redis.call('HGETALL', OWNER)
    local ids = {}
    local workers = {}
    for j = 1, #owners, 2 do
      ids[#ids + 1] = owners[j]
      workers[#workers + 1] = owners[j + 1]
    end
    local entries = hmget_all(ENTRIES, ids)
    local running = {}
    for j, id in ipairs(ids) do
      local entry = entries[j]
      if entry and entry_lane(entry) == lane then
        local run = redis.call('HGET', P .. ':w:' .. workers[j], id) or ''
        local token, claimed = string.match(run, '^(%d+)|([%d.e+]+)$')
        running[#running + 1] = {
          id = id, entry = entry, worker = workers[j], run = run,
          token = tonumber(token or '0'), claimed = tonumber(claimed or '0'),
        }
      end
    end
    table.sort(running, function(a, b)
      if a.claimed ~= b.claimed then return a.claimed < b.claimed end
      return a.token < b.token
    end)
    for j = offset + 1, math.min(offset + limit, #running) do
      local r = running[j]
      describe_live(out, r.id, 'running', r.entry, r.worker, r.run)
    end
  end
elseif state == 'dead' then
  local ids = redis.call('ZREVRANGE', dead_key(lane), offset, offset + limit - 1)
  local records = hmget_all(DONE, ids)
  for j, id in ipairs(ids) do
    if records[j] then
      describe_record(out, id, records[j])
    end
  end
elseif state == 'done' or state == 'cancelled' or state == 'expired' then
  -- The newest keep_last finished within keep_for, newest first; the score range leaves
  -- out what the lane's keep_for ended, the expiry check what its own expiry ended (a
  -- record kept under a shorter keep_for before the lane was declared again).
  local keep_last, keep_for = retention_of(lane)
  local key = kept_key(state, lane)
  local since = '(' .. num(now - keep_for)
  local at = offset
  while at < keep_last and #out < limit * 8 do
    local want = math.min(limit - #out / 8, keep_last - at)
    local ids = redis.call('ZREVRANGEBYSCORE', key, '+inf', since, 'LIMIT', at, want)
    if #ids == 0 then
      break
    end
    at = at + #ids
    local members = {}
    for j, id in ipairs(ids) do
      members[j] = expiry_member(id, state, lane)
    end
    local expiries = redis.call('ZMSCORE', FINISHED, unpack(members))
    local records = hmget_all(DONE, ids)
    for j, id in ipairs(ids) do
      if records[j] and expiries[j] and tonumber(expiries[j]) > now then
        describe_record(out, id, records[j])
      end
    end
  end
end
return {'ok', out}
