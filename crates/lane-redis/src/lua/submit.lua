-- Accepts commands at the back of their lanes (or, with a start time, in the delayed
-- set), once per submitter reference.
-- ARGV: client id, result ttl (ms); the number of references whose ids the client
-- received, then those references; the number of references the client gave up on (it
-- told its caller the submit failed), then those; then 7 fields per command: client
-- reference, lane, type, JSON payload, timing, idempotency key ('' for none), group ('' for
-- none: see the prelude's groups). The timing is '' for a command that may
-- start now and has no deadline, else 'not before (us)|deadline (us)|start-by (ms)|last',
-- each part empty when absent: the instant it may start and its start-by deadline on the
-- Redis clock, the deadline as the submitter gave it (ms since the Unix epoch), and '1'
-- when a refusal for a full lane is the submitter's last word (it stops waiting for room).
-- Returns {ids, known lanes, full lanes, duplicates}; an id of 0 means the command's lane
-- is not declared, -1 that the client gave up on the reference before this call arrived,
-- -2 that its lane is full (it holds max_waiting commands, pending and delayed).
-- Duplicates lists the positions (from 1) of the commands whose key a live command held:
-- their id is that command's, nothing was queued for them, and they are its watchers
-- (its result goes to their references too). Full lanes
-- holds 3 fields per lane that refused a command: lane, max_waiting, and what a submit
-- does ('' refuse, else wait: the longest wait in ms, or '-1' for as long as it takes).
-- A refusal is counted (the lane's 'rejected_full') when the lane refuses, or for a lane
-- that waits when the submitter's wait is over.
--
-- P:refs:<client> maps each reference to its command id until the client says it
-- received the id, so a submit sent again after a lost reply finds its command instead
-- of adding a second one. A reference given up on is marked 'void': its command, if
-- Redis accepted it after all, is cancelled, and a late copy of the call is refused. A
-- refused command leaves no reference: its submitter may send it again. A duplicate's
-- reference maps to 'd<id>', so a batch sent again gives the same answer even if that
-- command finished meanwhile; a void duplicate cancels nothing (other submits await it).
--
-- Keys (P:keys, P:keyed, see the prelude): a submit whose lane is declared and whose key
-- a live command holds (also one earlier in the same call) queues nothing; it becomes a
-- watcher of that command and the event 'D' is written. Checked before the lane's bound:
-- a duplicate takes no room.
local client = ARGV[1]
local ttl = tonumber(ARGV[2])
local REFS = P .. ':refs:' .. client
local FIELDS = 7
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
  if id and id ~= 'void' and string.sub(id, 1, 1) ~= 'd' then
    cancel_command(id,
      '{"kind":"cancelled","message":"withdrawn: Redis did not answer its submit in time and the submitter reported it as failed"}')
  end
  redis.call('HSET', REFS, cref, 'void')
end
at = at + nvoid + 1
local n = (#ARGV - at + 1) / FIELDS
local crefs = {}
for j = 0, n - 1 do
  crefs[j + 1] = ARGV[at + j * FIELDS]
end
local seen = {}
if n > 0 then
  seen = hmget_all(REFS, crefs)
end

-- Commands waiting in a lane (pending and delayed), with those this call adds.
local waiting = {}
local function lane_waiting(lane)
  local w = waiting[lane]
  if w == nil then
    w = redis.call('LLEN', P .. ':q:' .. lane)
      + tonumber(redis.call('HGET', P .. ':lane:' .. lane, 'delayed') or '0')
      + group_pending_total(lane)
    waiting[lane] = w
  end
  return w
end

-- What becomes of each command: an id already known, -1 void, 0 no lane, -2 full,
-- true: accepted now, or a duplicate: {dup = id} of a live command, {of = j} of the
-- command at position j of this call, {known = id} answered as one before.
local fate = {}
-- Keys taken by commands this call accepts: key -> position.
local batch_keys = {}
-- Entries of live commands found holding a key, by id.
local holders = {}
local accepted = 0
local full = {}
local full_lanes = {}
for j = 0, n - 1 do
  local base = at + j * FIELDS
  local lane = ARGV[base + 1]
  local known_id = seen[j + 1]
  local c = (not known_id) and lane_cfg(lane)
  local key = ARGV[base + 5]
  local holder = nil
  if key ~= '' and c and not batch_keys[key] then
    holder = redis.call('HGET', KEYS_HELD, key)
    if holder then
      local entry = redis.call('HGET', ENTRIES, holder)
      if entry then
        holders[holder] = entry
      else
        -- Held by a command that is gone (a script of an older version finished it):
        -- the key is free.
        redis.call('HDEL', KEYS_HELD, key)
        holder = nil
      end
    end
  end
  if known_id == 'void' then
    fate[j + 1] = -1
  elseif known_id and string.sub(known_id, 1, 1) == 'd' then
    fate[j + 1] = {known = tonumber(string.sub(known_id, 2))}
  elseif known_id then
    fate[j + 1] = tonumber(known_id)
  elseif not c then
    fate[j + 1] = 0
  elseif key ~= '' and batch_keys[key] then
    fate[j + 1] = {of = batch_keys[key]}
  elseif holder then
    fate[j + 1] = {dup = holder}
  elseif c.max_waiting and lane_waiting(lane) >= c.max_waiting then
    fate[j + 1] = -2
    local last = string.sub(ARGV[base + 4], -2) == '|1'
    if c.when_full ~= 'wait' or last then
      stat('rejected_full')
      redis.call('HINCRBY', P .. ':lane:' .. lane, 'rejected_full', 1)
    end
    if not full_lanes[lane] then
      full_lanes[lane] = true
      full[#full + 1] = lane
      full[#full + 1] = string.format('%d', c.max_waiting)
      if c.when_full == 'wait' then
        full[#full + 1] = c.wait_ms == '' and '-1' or c.wait_ms
      else
        full[#full + 1] = ''
      end
    end
  else
    fate[j + 1] = true
    accepted = accepted + 1
    if key ~= '' then
      batch_keys[key] = j + 1
    end
    if c.max_waiting then
      waiting[lane] = lane_waiting(lane) + 1
    end
  end
end
local next_id = 0
if accepted > 0 then
  next_id = redis.call('INCRBY', P .. ':seq', accepted) - accepted + 1
end

-- The earliest timer (a start time or deadline) before this call, if it adds one.
local function earliest(zkey)
  local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2])
end
local now = clock()
local submitted_ms = clock_ms()
local ids = {}
local entries = {}
local refs = {}
local by_lane = {}
local lanes = {}
local delayed = {}
local delayed_lanes = {}
local deadlines = {}
local start_by = {}
local first_timer = nil
local dups = {}
local groups = {}
-- Lanes with commands of a group in this call, and the group of each such command.
local lane_grouped = {}
local group_for = {}
local keys_held = {}
local keyed = {}
for j = 0, n - 1 do
  local base = at + j * FIELDS
  local lane = ARGV[base + 1]
  local f = fate[j + 1]
  if f == true then
    local id = next_id
    next_id = next_id + 1
    entries[#entries + 1] = id
    entries[#entries + 1] = entry_value(lane, 0, 0, client, ARGV[base], submitted_ms,
      ARGV[base + 2], ARGV[base + 3])
    refs[#refs + 1] = ARGV[base]
    refs[#refs + 1] = id
    ids[#ids + 1] = id
    event3('S', id, lane, ARGV[base + 2])
    local g = ARGV[base + 6]
    if g ~= '' then
      groups[#groups + 1] = id
      groups[#groups + 1] = g
    end
    if ARGV[base + 5] ~= '' then
      keys_held[#keys_held + 1] = ARGV[base + 5]
      keys_held[#keys_held + 1] = id
      keyed[id] = '\n' .. ARGV[base + 5]
    end
    local not_before, deadline, by = nil, nil, nil
    if ARGV[base + 4] ~= '' then
      local nb, dl, sb = string.match(ARGV[base + 4], '^([^|]*)|([^|]*)|([^|]*)|')
      not_before, deadline, by = tonumber(nb), tonumber(dl), sb
    end
    if deadline then
      deadlines[#deadlines + 1] = num(deadline)
      deadlines[#deadlines + 1] = id
      start_by[#start_by + 1] = id
      start_by[#start_by + 1] = by
      if not first_timer or deadline < first_timer then first_timer = deadline end
    end
    if not_before and not_before > now then
      delayed[#delayed + 1] = num(not_before)
      delayed[#delayed + 1] = id
      delayed_lanes[lane] = (delayed_lanes[lane] or 0) + 1
      if not first_timer or not_before < first_timer then first_timer = not_before end
    else
      local list = by_lane[lane]
      if not list then
        list = {}
        by_lane[lane] = list
        lanes[#lanes + 1] = lane
      end
      list[#list + 1] = id
      if g ~= '' then
        lane_grouped[lane] = true
        group_for[id] = g
      end
    end
  elseif type(f) == 'table' then
    local id, htype, hlane
    if f.known then
      id = f.known
    elseif f.of then
      id = ids[f.of]
      local first = at + (f.of - 1) * FIELDS
      hlane, htype = ARGV[first + 1], ARGV[first + 2]
      keyed[id] = client .. ':' .. ARGV[base] .. ' ' .. keyed[id]
    else
      id = f.dup
      local entry = holders[id]
      hlane, htype = entry_lane(entry), entry_type(entry)
      -- Read now: an earlier command of this call may have joined the same holder.
      local held = redis.call('HGET', KEYED, id) or ('\n' .. ARGV[base + 5])
      redis.call('HSET', KEYED, id, client .. ':' .. ARGV[base] .. ' ' .. held)
      id = tonumber(id)
    end
    if hlane then
      stat('deduplicated')
      event4('D', id, hlane, htype, cjson.encode(ARGV[base + 5]))
    end
    refs[#refs + 1] = ARGV[base]
    refs[#refs + 1] = string.format('d%d', id)
    ids[#ids + 1] = id
    dups[#dups + 1] = j + 1
  else
    ids[#ids + 1] = f
  end
end
-- A timer earlier than every one the workers know of: wake a worker so it looks again
-- when it is due (workers never poll; each round trip tells a worker when to look).
local wake_for_timer = false
if first_timer then
  local known_first = earliest(DELAYED)
  local d = earliest(DEADLINES)
  if d and (not known_first or d < known_first) then known_first = d end
  wake_for_timer = not known_first or first_timer < known_first
end
if accepted > 0 then
  call_sliced('HSET', ENTRIES, entries)
end
if #groups > 0 then
  call_sliced('HSET', GROUP_OF, groups)
  grouped_cache = true
end

if #keys_held > 0 then
  call_sliced('HSET', KEYS_HELD, keys_held)
  local fields = {}
  for id, value in pairs(keyed) do
    fields[#fields + 1] = id
    fields[#fields + 1] = value
  end
  call_sliced('HSET', KEYED, fields)
end
if #refs > 0 or nvoid > 0 then
  if #refs > 0 then
    call_sliced('HSET', REFS, refs)
  end
  redis.call('PEXPIRE', REFS, ttl)
end
if #delayed > 0 then
  call_sliced('ZADD', DELAYED, delayed)
  for lane, count in pairs(delayed_lanes) do
    add_delayed(lane, count)
  end
end
if #deadlines > 0 then
  call_sliced('ZADD', DEADLINES, deadlines)
  call_sliced('HSET', START_BY, start_by)
end
for _, lane in ipairs(lanes) do
  if lane_grouped[lane] then
    -- One at a time, in submit order: groups (and the commands of no group) enter the
    -- lane's ring in the order their commands came.
    local plain = {}
    for _, id in ipairs(by_lane[lane]) do
      local g = group_for[id]
      push_pending(lane, id, false, g or false)
      if not g then
        plain[#plain + 1] = id
      end
    end
    stamp_pending(lane, plain)
  else
    call_sliced('RPUSH', P .. ':q:' .. lane, by_lane[lane])
    stamp_pending(lane, by_lane[lane])
    own_enter_ring(lane)
  end
  refresh(lane, false)
end
local known = {}
local missing = false
for j = 1, n do
  if fate[j] == 0 then missing = true end
end
if missing then
  known = redis.call('HKEYS', P .. ':lanes')
end
if accepted > 0 then
  stat('submitted', accepted)
  local woken = 0
  if redis.call('ZCARD', READY) > 0 then
    woken = wake_idle(accepted)
  end
  if wake_for_timer and woken == 0 then
    -- An idle worker if there is one, else any: a busy worker expires commands too.
    if wake_idle(1) == 0 then
      local any = redis.call('ZRANGE', P .. ':workers', 0, 0)
      if any[1] then
        redis.call('LPUSH', P .. ':wake:' .. any[1], '1')
      end
    end
  end
end
flush(ttl)
return {ids, known, full, dups}
