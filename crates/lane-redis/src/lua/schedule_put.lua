-- Creates or replaces a recurring schedule (see the prelude). ARGV: name, the Schedule
-- as JSON, its lane, its next instant after now (ms, '' for none), the replaced
-- schedule's next instant to keep (ms, '' for none). A replaced schedule keeps its
-- counts, its last instant and whether it is paused, as in process; its next instant is
-- the one after now, unless the schedule is put again unchanged (the same JSON), or the
-- caller found the next instant it had due (or about to be), not fired yet and an
-- instant of the new schedule too, and it is still the stored one: then it stays, so
-- several processes putting the same schedule (each at its start) never drop the
-- instant due at that moment, whatever their clocks say. Returns
-- {'ok', state} (see pack_sched_state), {'unknown_lane'} when its lane is not
-- declared, or {'stale', last fired instant} when the next instant given is not after
-- the instant a worker fired meanwhile (the caller read its clock before that fire): the
-- caller computes the next instant after that one and calls again, so a replace never
-- fires an instant twice. Wakes the idle workers (or one busy one), whose next round
-- trips tell their schedule tasks.
local name, lane = ARGV[1], ARGV[3]
if not lane_cfg(lane) then
  return {'unknown_lane'}
end
local s = sched_state(name)
if s and s.next ~= ''
    and (redis.call('HGET', SCHEDULES, name) == ARGV[2] or s.next == ARGV[5]) then
  -- The same schedule put again (or one whose instants include the next one): its next
  -- instant stays, whatever the caller's clock said.
else
  s = s or {paused = false, last = '', last_id = '', fired = 0, skipped = 0}
  if ARGV[4] ~= '' and s.last ~= '' and tonumber(ARGV[4]) <= tonumber(s.last) then
    return {'stale', s.last}
  end
  s.next = ARGV[4]
end
redis.call('HSET', SCHEDULES, name, ARGV[2])
save_sched_state(name, s)
if not s.paused and s.next ~= '' then
  wake_one_worker(true)
end
return {'ok', pack_sched_state(s)}
