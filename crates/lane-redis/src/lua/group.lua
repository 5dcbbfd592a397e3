-- A lane's groups (see the prelude's groups). ARGV: operation ('pause', 'resume',
-- 'cancel', 'status', 'list'), lane, then for 'pause', 'resume', 'status': the group;
-- for 'cancel': the group, result ttl (ms), the error JSON its commands end with; for
-- 'list': offset, limit.
-- Returns {'unknown'} for a lane not declared; else {'ok'} for 'pause' and 'resume',
-- {'ok', count} for 'cancel' (the commands the cancel reached: pending and delayed ones
-- ended now, running ones signalled), {'ok', group} for 'status' and {'ok', groups...}
-- for 'list', each group 6 fields: key, pending, active, paused (1/0), throttled (1/0),
-- max concurrency (-1 for none).
local op, lane = ARGV[1], ARGV[2]
local c = lane_cfg(lane)
if not c then
  return {'unknown'}
end
local now = clock()

-- Appends group g's counts to `out`.
local function describe_group(out, g)
  local max, interval, tolerance = group_limits(lane, g)
  local pending = redis.call('LLEN', gq_key(lane, g))
  local until_at = group_throttle_until(lane, g)
  local throttled = until_at ~= nil and until_at > now
  if not throttled and pending > 0 and interval > 0 then
    local tat = tonumber(redis.call('GET', gtat_key(lane, g)) or '0')
    throttled = now < tat - tolerance
  end
  local n = #out
  out[n + 1] = g
  out[n + 2] = pending
  out[n + 3] = group_active(lane, g)
  out[n + 4] = group_paused(lane, g) and 1 or 0
  out[n + 5] = throttled and 1 or 0
  out[n + 6] = max or -1
end

if op == 'pause' then
  local g = ARGV[3]
  redis.call('SADD', gpaused_key(lane), g)
  group_leave_ring(lane, g)
  group_touch(lane, g)
  refresh(lane, false)
  flush(1)
  return {'ok'}
elseif op == 'resume' then
  local g = ARGV[3]
  redis.call('SREM', gpaused_key(lane), g)
  group_enter_ring(lane, g)
  group_touch(lane, g)
  refresh(lane, false)
  flush(1)
  if redis.call('ZSCORE', READY, lane) then
    wake_idle(1)
  end
  return {'ok'}
elseif op == 'cancel' then
  local g, ttl, err = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local reached = 0
  -- Pending: the group's list, at once.
  local ids = redis.call('LRANGE', gq_key(lane, g), 0, -1)
  if #ids > 0 then
    redis.call('DEL', gq_key(lane, g))
    redis.call('HINCRBY', P .. ':lane:' .. lane, 'gpending', -#ids)
    local entries = hmget_all(ENTRIES, ids)
    for j, id in ipairs(ids) do
      if entries[j] then
        stat('cancelled')
        finish(id, 'cancelled', 'err', err, now, entries[j], nil, nil)
        reached = reached + 1
      end
    end
  end
  group_leave_ring(lane, g)
  if any_grouped() then
    -- Delayed and running commands are not kept per group: the queue's delayed set and
    -- running commands are read (a cancel of a group is rare; claims never do this).
    local delayed = redis.call('ZRANGE', DELAYED, 0, -1)
    if #delayed > 0 then
      local of = hmget_all(GROUP_OF, delayed)
      local mine = {}
      for j, id in ipairs(delayed) do
        if of[j] == g then
          mine[#mine + 1] = id
        end
      end
      if #mine > 0 then
        local entries = hmget_all(ENTRIES, mine)
        for j, id in ipairs(mine) do
          local entry = entries[j]
          if entry and entry_lane(entry) == lane then
            redis.call('ZREM', DELAYED, id)
            add_delayed(lane, -1)
            stat('cancelled')
            finish(id, 'cancelled', 'err', err, now, entry, nil, nil)
            reached = reached + 1
          end
        end
      end
    end
    if group_active(lane, g) > 0 then
      local running = redis.call('HKEYS', OWNER)
      local of = hmget_all(GROUP_OF, running)
      for j, id in ipairs(running) do
        if of[j] == g then
          local entry = redis.call('HGET', ENTRIES, id)
          if entry and entry_lane(entry) == lane and cancel_command(id, err) == 'signalled' then
            reached = reached + 1
          end
        end
      end
    end
  end
  group_touch(lane, g)
  refresh(lane, false)
  flush(ttl)
  return {'ok', reached}
elseif op == 'status' then
  local out = {'ok'}
  describe_group(out, ARGV[3])
  return out
elseif op == 'list' then
  local offset, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
  local out = {'ok'}
  for _, g in ipairs(redis.call('ZRANGE', gknown_key(lane), offset, offset + limit - 1)) do
    describe_group(out, g)
  end
  return out
end
return redis.error_reply('unknown group operation ' .. tostring(op))
