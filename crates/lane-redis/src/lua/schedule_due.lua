-- The recurring schedules due now, for a worker's schedule task. Returns {now (ms,
-- Redis clock), the earliest next instant (ms, '' for none), due}, where due holds 3
-- fields per schedule whose next instant is at or before now (at most 64, earliest
-- first): name, Schedule JSON, state (see the prelude).
local now = clock_ms()
local names = redis.call('ZRANGEBYSCORE', SCHED_NEXT, '-inf', now, 'LIMIT', 0, 64)
local due = {}
for _, name in ipairs(names) do
  local def = redis.call('HGET', SCHEDULES, name)
  local state = redis.call('HGET', SCHED_STATE, name)
  if def and state then
    due[#due + 1] = name
    due[#due + 1] = def
    due[#due + 1] = state
  else
    -- Left by a removal of an older version: nothing to fire.
    redis.call('ZREM', SCHED_NEXT, name)
  end
end
local first = redis.call('ZRANGE', SCHED_NEXT, 0, 0, 'WITHSCORES')
return {now, first[2] or '', due}
