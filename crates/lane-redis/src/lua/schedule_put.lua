-- Creates or replaces a recurring schedule (see the prelude). ARGV: name, the Schedule
-- as JSON, its lane, its next instant after now (ms, '' for none). A replaced schedule
-- keeps its counts, its last instant and whether it is paused, as in process. Returns
-- {'ok', state} (see pack_sched_state), or {'unknown_lane'} when its lane is not
-- declared. Wakes a worker, whose next round trip tells its schedule task.
local name, lane = ARGV[1], ARGV[3]
if not lane_cfg(lane) then
  return {'unknown_lane'}
end
local s = sched_state(name)
  or {paused = false, last = '', last_id = '', fired = 0, skipped = 0}
s.next = ARGV[4]
redis.call('HSET', SCHEDULES, name, ARGV[2])
save_sched_state(name, s)
if not s.paused and s.next ~= '' then
  wake_one_worker()
end
return {'ok', pack_sched_state(s)}
