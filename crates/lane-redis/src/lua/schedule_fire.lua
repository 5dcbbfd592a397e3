-- Fires (or skips) a recurring schedule's due instants, once: a compare-and-set on the
-- instant. Only if the schedule is still the one the worker read (the same JSON) and its
-- stored next instant is still the one the worker read does this run; otherwise another
-- worker did it (or the schedule changed) and it returns {'lost'}.
-- ARGV: name, Schedule JSON as read, next instant as read (ms), next instant after this
-- check (ms, '' for none), instant to fire (ms, '' for none), first and last instant
-- skipped (ms, '' for none), lane, command type, payload JSON, delay (us: the instant's
-- jitter), result ttl (ms).
-- The instant's command is accepted as submit.lua accepts one (no submitter waits for
-- it; with a delay, into the delayed set), in this same run; a lane that is not declared
-- or is full refuses it (schedules never wait for room) and the instant counts as
-- skipped with the reason, as in process. Events: 'K' for skipped instants, 'S' and 'G'
-- for a fired one. Returns {'ok', command id or ''}.
local name = ARGV[1]
if redis.call('HGET', SCHEDULES, name) ~= ARGV[2] then
  return {'lost'}
end
local s = sched_state(name)
if not s or s.paused or s.next ~= ARGV[3] then
  return {'lost'}
end
s.next = ARGV[4]
if ARGV[6] ~= '' then
  s.skipped = s.skipped + 1
  stat('schedule_skipped')
  event4('K', name, ARGV[6], ARGV[7], 'missed')
end
local id = ''
local instant = ARGV[5]
if instant ~= '' then
  local lane, ctype, payload = ARGV[8], ARGV[9], ARGV[10]
  local c = lane_cfg(lane)
  local refused = nil
  if not c then
    local known = redis.call('HKEYS', P .. ':lanes')
    table.sort(known)
    local list = table.concat(known, ', ')
    if list == '' then list = '(none declared in Redis)' end
    refused = "lane '" .. lane .. "' not found; known lanes: " .. list
  elseif c.max_waiting and redis.call('LLEN', P .. ':q:' .. lane)
      + tonumber(redis.call('HGET', P .. ':lane:' .. lane, 'delayed') or '0')
      + group_pending_total(lane)
      >= c.max_waiting then
    stat('rejected_full')
    redis.call('HINCRBY', P .. ':lane:' .. lane, 'rejected_full', 1)
    refused = "lane '" .. lane .. "' is full: " .. string.format('%d', c.max_waiting)
      .. ' commands are waiting, its max_waiting; submit again later, raise max_waiting, '
      .. 'or let the lane wait for room (WhenFull::Wait)'
  end
  if refused then
    s.skipped = s.skipped + 1
    stat('schedule_skipped')
    event4('K', name, instant, instant, refused)
  else
    local now = clock()
    local n = redis.call('INCR', P .. ':seq')
    id = string.format('%d', n)
    redis.call('HSET', ENTRIES, id, entry_value(lane, 0, 0, '', '', clock_ms(), ctype, payload))
    stat('submitted')
    stat('schedule_fired')
    event3('S', id, lane, ctype)
    local delay = tonumber(ARGV[11]) or 0
    if delay > 0 then
      local due_at = now + delay
      local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
      redis.call('ZADD', DELAYED, num(due_at), id)
      add_delayed(lane, 1)
      -- Earlier than every delayed command the workers know of: one looks again.
      if not first[2] or due_at < tonumber(first[2]) then
        wake_one_worker()
      end
    else
      redis.call('RPUSH', P .. ':q:' .. lane, id)
      stamp_pending(lane, {id})
      own_enter_ring(lane)
      refresh(lane, false)
      if redis.call('ZSCORE', READY, lane) then
        wake_idle(1)
      end
    end
    s.fired = s.fired + 1
    s.last = instant
    s.last_id = id
    event4('G', name, lane, id, instant)
  end
end
save_sched_state(name, s)
flush(tonumber(ARGV[12]))
return {'ok', id}
