-- Reads or changes recurring schedules (see the prelude). ARGV: mode, then
-- - 'list': returns {names and Schedule JSON alternating, names and states alternating};
-- - 'get', name: returns {Schedule JSON, state}, or {} for an unknown name;
-- - 'remove', name: returns 1, or 0 for an unknown name;
-- - 'pause', name: returns 'ok' or 'unknown';
-- - 'resume', name, the Schedule JSON as read by the caller, now (ms), its first instant
--   after now (ms, '' for none), its latest instant at or before now (ms, '' for none):
--   returns 'ok', 'unknown', 'changed' when the schedule was replaced since the caller
--   read it (it reads again), or 'stale' when the next instant given is not after the
--   last one fired (it computes the next one after that instant and calls again). The instants missed while paused (from the next one it had,
--   if due by now, to the latest) count as one skip with the event 'K' (reason
--   'paused'), as in process. Wakes the idle workers (or one busy one).
local mode, name = ARGV[1], ARGV[2]
if mode == 'list' then
  return {redis.call('HGETALL', SCHEDULES), redis.call('HGETALL', SCHED_STATE)}
end
local def = redis.call('HGET', SCHEDULES, name)
local s = sched_state(name)
if mode == 'get' then
  if not def or not s then
    return {}
  end
  return {def, pack_sched_state(s)}
elseif mode == 'remove' then
  local gone = redis.call('HDEL', SCHEDULES, name)
  redis.call('HDEL', SCHED_STATE, name)
  redis.call('ZREM', SCHED_NEXT, name)
  return gone
end
if not def or not s then
  return 'unknown'
end
if mode == 'pause' then
  if not s.paused then
    s.paused = true
    save_sched_state(name, s)
  end
  return 'ok'
end
-- resume
if not s.paused then
  return 'ok'
end
if def ~= ARGV[3] then
  return 'changed'
end
if ARGV[5] ~= '' and s.last ~= '' and tonumber(ARGV[5]) <= tonumber(s.last) then
  return 'stale'
end
local now, latest = tonumber(ARGV[4]), ARGV[6]
local missed_from = s.next ~= '' and tonumber(s.next) <= now and s.next
s.paused = false
s.next = ARGV[5]
if missed_from and latest ~= '' then
  s.skipped = s.skipped + 1
  stat('schedule_skipped')
  event4('K', name, missed_from, latest, 'paused')
end
save_sched_state(name, s)
flush(1)
if s.next ~= '' then
  wake_one_worker(true)
end
return 'ok'
