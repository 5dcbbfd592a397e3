-- A worker's one round trip: report finished runs, renew its lease, do housekeeping,
-- collect cancel requests, claim new commands.
-- ARGV: worker id, lease (us), how many commands to claim, '1' if the worker registered
-- before, result ttl (ms), number of completions, then 5 fields per completion:
-- id, fencing token, kind ('ok', 'retry', 'fail', 'cancel', 'release', each with a '!'
-- appended when the handler still runs after it was answered, or 'freed' when such a
-- handler returned at last), data, delay (us);
-- then the number of runs the worker knows it holds and their ids, or -1 when it does
-- not reconcile (it reconciles after a round trip whose reply it never got).
-- Returns {status, wait_ms, claims, cancels, stale, lane_runs, given_back,
-- next_schedule}: status 'ok'
-- or 'lost' (the lease expired and the worker's commands went to other workers; then
-- nothing after stale); wait_ms is when to call again without being woken (-1: only
-- when woken); claims hold 3 fields per command: id, fencing token, entry (see
-- entry_value); lane_runs holds 2 fields per lane claimed from: lane, run settings
-- (declare.lua); given_back counts the runs Redis held for the worker that it did not
-- know of (claims whose reply was lost), put back at the front of their lanes;
-- next_schedule is the earliest next instant of the recurring schedules (ms, '' none).
local wid = ARGV[1]
local lease = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local registered = ARGV[4] == '1'
local ttl = tonumber(ARGV[5])
local ncomp = tonumber(ARGV[6])
local now = clock()
local W = P .. ':workers'
-- This worker's runs: command id -> 'fencing token|claimed at'; and for each handler
-- that ignored its cancel or timeout and still runs after its command was answered,
-- 'held:<id>' -> lane: it keeps its lane slot until the worker says it returned.
local RUNNING = P .. ':w:' .. wid
local touched = {}

-- 1. Finished runs, each fenced: only the current holder of the command's lease may
-- finish it, and a run lives in its worker's hash only while the lease holds.
local stale = {}
local finished_ids = {}
if ncomp > 0 then
  local ids = {}
  for j = 0, ncomp - 1 do
    ids[#ids + 1] = ARGV[7 + j * 5]
  end
  local runs = hmget_all(RUNNING, ids)
  local entries = hmget_all(ENTRIES, ids)
  for j = 0, ncomp - 1 do
    local base = 7 + j * 5
    local id, token, kind, data = ARGV[base], ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
    local run, entry = runs[j + 1], entries[j + 1]
    local hold = string.sub(kind, -1) == '!'
    if hold then
      kind = string.sub(kind, 1, -2)
    end
    if kind == 'freed' then
      -- A held slot's handler returned: the slot is free (gone already if the worker
      -- was declared dead meanwhile).
      local held = redis.call('HGET', RUNNING, 'held:' .. id)
      if held then
        local lane, g = split_held(held)
        redis.call('HDEL', RUNNING, 'held:' .. id)
        add_active(lane, -1)
        if g then
          group_release(lane, g)
        end
        touched[lane] = true
      end
    elseif not run or not entry or string.sub(run, 1, #token + 1) ~= token .. '|' then
      stat('stale')
      stale[#stale + 1] = id
    else
      local lane, attempts, failures = string.match(entry, HEAD)
      -- The group's slot is freed with the lane's (a held one when the handler returns).
      local g = group_of(id)
      if hold then
        stat('abandoned')
        event3('A', id, lane, data)
        redis.call('HSET', RUNNING, 'held:' .. id, held_value(lane, g))
      else
        add_active(lane, -1)
        if g then
          group_release(lane, g)
        end
      end
      finished_ids[#finished_ids + 1] = id
      touched[lane] = true
      if kind == 'retry' and redis.call('SISMEMBER', CANCEL, id) == 1 then
        kind = 'cancel'
        data = '{"kind":"cancelled","message":"cancelled while running; not retried"}'
      end
      if kind == 'ok' then
        stat('completed')
        finish(id, 'done', 'ok', data, now, entry, wid, run)
      elseif kind == 'retry' then
        stat('retried')
        local delay = tonumber(ARGV[base + 4])
        requeue_entry(id, entry, tonumber(attempts) + 1, tonumber(failures) + 1)
        event5('R', id, lane, tonumber(attempts) + 2, ARGV[base + 4], data)
        if delay > 0 then
          redis.call('ZADD', DELAYED, num(now + delay), id)
          add_delayed(lane, 1)
        else
          push_pending(lane, id, true, g or false)
          stamp_pending(lane, {id})
        end
      elseif kind == 'fail' then
        stat('dead')
        finish(id, 'dead', 'err', data, now, entry, wid, run)
      elseif kind == 'cancel' then
        stat('cancelled')
        finish(id, 'cancelled', 'err', data, now, entry, wid, run)
      else
        -- 'release': the worker stopped before running it to the end; the run does not
        -- count, the entry still holds the counts from before it, and the command keeps
        -- the instant it became pending.
        stat('released')
        push_pending(lane, id, true, g or false)
      end
    end
  end
  if #finished_ids > 0 then
    call_sliced('HDEL', RUNNING, finished_ids)
    call_sliced('HDEL', OWNER, finished_ids)
  end
end

-- 2. The lease. A worker that registered before but is gone was declared dead.
if registered and not redis.call('ZSCORE', W, wid) then
  for lane in pairs(touched) do
    refresh(lane, false)
  end
  flush(ttl)
  return {'lost', -1, {}, {}, stale}
end
redis.call('ZADD', W, num(now + lease), wid)
if want > 0 then
  -- This round trip claims, so it consumes wake-ups. One that claims nothing (a
  -- heartbeat, or a report while another round trip holds the free slots) must leave
  -- them for the one that will.
  redis.call('DEL', P .. ':wake:' .. wid)
  redis.call('SREM', P .. ':idle', wid)
end

-- 2b. Reconciling: a claim whose reply was lost left runs here that the worker never
-- started. They go back to the front of their lanes (oldest first) without counting an
-- attempt, or end as cancelled if a cancel was requested meanwhile.
local given_back = 0
local known_at = 7 + ncomp * 5
local nknown = tonumber(ARGV[known_at] or '-1')
if nknown >= 0 then
  local known = {}
  for j = 1, nknown do
    known[ARGV[known_at + j]] = true
  end
  local fields, commands = hand_back(wid, redis.call('HGETALL', RUNNING),
    function(field) return known[field] end, false,
    '{"kind":"cancelled","message":"cancelled before it started"}', now)
  if #fields > 0 then
    call_sliced('HDEL', RUNNING, fields)
  end
  given_back = commands
end

-- 3. Housekeeping: workers whose lease expired, start-by deadlines that passed,
-- delayed retries and starts that are due, lanes whose rate limit or timed pause is over.
local expired = redis.call('ZRANGEBYSCORE', W, '-inf', num(now), 'LIMIT', 0, 16)
for _, w in ipairs(expired) do
  if w ~= wid then
    remove_worker(w, now)
    stat('workers_lost')
  end
end
-- Commands not started by their deadline leave their lane (or the delayed set) and
-- end as expired. Deadlines come first: a delayed command past its deadline never starts.
local late = redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', num(now), 'LIMIT', 0, 256)
if #late > 0 then
  redis.call('ZREM', DEADLINES, unpack(late))
  local entries = hmget_all(ENTRIES, late)
  local owners = hmget_all(OWNER, late)
  local kept = {}
  for j, id in ipairs(late) do
    local entry = entries[j]
    if entry and not owners[j] then
      local lane = entry_lane(entry)
      if redis.call('ZREM', DELAYED, id) == 1 then
        add_delayed(lane, -1)
      else
        remove_pending(lane, id)
      end
      expire_command(id, entry, now)
      touched[lane] = true
    else
      kept[#kept + 1] = id
    end
  end
  if #kept > 0 then
    call_sliced('HDEL', START_BY, kept)
  end
end
-- Due retries go back to the front of their lanes (the earliest due first); due
-- delayed starts (commands that never ran) to the back, in the order of their due times
-- (then of their ids: a batch delayed alike keeps its submit order).
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', num(now), 'WITHSCORES', 'LIMIT', 0, 256)
if #due > 0 then
  local ids = {}
  local due_at = {}
  for j = 1, #due, 2 do
    ids[#ids + 1] = due[j]
    due_at[due[j]] = tonumber(due[j + 1])
  end
  redis.call('ZREM', DELAYED, unpack(ids))
  local entries = hmget_all(ENTRIES, ids)
  local retries = {}
  local starts = {}
  local left = {}
  for j, id in ipairs(ids) do
    local entry = entries[j]
    if entry then
      local lane, attempts = string.match(entry, HEAD)
      left[lane] = (left[lane] or 0) - 1
      if attempts == '0' then
        starts[#starts + 1] = {id, lane}
      else
        retries[#retries + 1] = {id, lane}
      end
    end
  end
  for lane, n in pairs(left) do
    add_delayed(lane, n)
    touched[lane] = true
  end
  for j = #retries, 1, -1 do
    local id, lane = retries[j][1], retries[j][2]
    push_pending(lane, id, true)
    stamp_pending(lane, {id})
  end
  table.sort(starts, function(a, b)
    local ta, tb = due_at[a[1]], due_at[b[1]]
    if ta ~= tb then return ta < tb end
    return tonumber(a[1]) < tonumber(b[1])
  end)
  for _, start in ipairs(starts) do
    local id, lane = start[1], start[2]
    push_pending(lane, id, false)
    stamp_pending(lane, {id})
  end
end
local unthrottled = redis.call('ZRANGEBYSCORE', THROTTLED, '-inf', num(now), 'LIMIT', 0, 64)
for _, lane in ipairs(unthrottled) do
  unthrottle(lane)
  touched[lane] = true
end
-- Groups whose rate limit held them back and whose permit is due take turns again.
local ungated = redis.call('ZRANGEBYSCORE', GTHROTTLED, '-inf', num(now), 'LIMIT', 0, 64)
for _, member in ipairs(ungated) do
  redis.call('ZREM', GTHROTTLED, member)
  local lane, g = string.match(member, '^([^\n]*)\n(.*)$')
  if lane then
    group_enter_ring(lane, g)
    touched[lane] = true
  end
end
-- Finished records past their expiry (their lane's keep_for).
local old = redis.call('ZRANGEBYSCORE', FINISHED, '-inf', num(now), 'LIMIT', 0, 256)
if #old > 0 then
  forget_expired(old)
end
for lane in pairs(touched) do
  refresh(lane, false)
end

-- 4. Cancel requests for this worker's runs.
local cancel_key = P .. ':wcancel:' .. wid
local cancels = redis.call('SMEMBERS', cancel_key)
if #cancels > 0 then
  redis.call('DEL', cancel_key)
end

-- 5. Claims: the most urgent ready lane first, several commands of a lane at once.
-- The rate limit grants permits only for commands that start now. Lanes with a boost
-- compete with the priority their head command has earned by now.
rescore_boosted()

-- Grants up to k permits; returns the number granted and, when fewer than k, the
-- instant (us) the next permit is due.
local function admit(lane, c, k)
  if c.rl == 'tb' then
    local spacing = c.period / c.n
    local tolerance = spacing * (c.burst - 1)
    local lk = P .. ':lane:' .. lane
    local tat = tonumber(redis.call('HGET', lk, 'tat') or '0')
    if tat < now then tat = now end
    local granted = 0
    if tat - now <= tolerance then
      granted = math.min(k, math.floor((tolerance - (tat - now)) / spacing) + 1)
    end
    if granted > 0 then
      tat = tat + granted * spacing
      redis.call('HSET', lk, 'tat', num(tat))
    end
    if granted < k then
      return granted, tat - tolerance
    end
    return granted, nil
  elseif c.rl == 'sw' then
    local wk = P .. ':window:' .. lane
    redis.call('ZREMRANGEBYSCORE', wk, '-inf', num(now - c.period))
    local granted = math.min(k, c.n - redis.call('ZCARD', wk))
    if granted > 0 then
      local first = redis.call('INCRBY', P .. ':window_seq', granted) - granted
      local entries = {}
      for j = 1, granted do
        entries[#entries + 1] = num(now)
        entries[#entries + 1] = first + j
      end
      call_sliced('ZADD', wk, entries)
      redis.call('PEXPIRE', wk, num(math.ceil(c.period / 1000) + 1000))
    else
      granted = 0
    end
    if granted < k then
      local oldest = redis.call('ZRANGE', wk, 0, 0, 'WITHSCORES')
      return granted, tonumber(oldest[2]) + c.period
    end
    return granted, nil
  end
  return k, nil
end

-- Groups: the group that had each lane's last turn (field 'gserved' of the lane's hash,
-- '' for the commands of no group), read and written once per round trip. As in
-- process, a group keeps the ring's front while it takes its turn and goes to the back
-- when the next turn is chosen, if another group waits then.
local served = {}
local served_dirty = {}
local function get_served(lane)
  local s = served[lane]
  if s == nil then
    s = redis.call('HGET', P .. ':lane:' .. lane, 'gserved')
    served[lane] = s
  end
  return s
end
local function set_served(lane, g)
  if get_served(lane) ~= g then
    served[lane] = g
    served_dirty[lane] = true
  end
end

-- Whose turn it is in a lane whose ring holds groups. Groups that cannot start leave
-- the ring's front (one held back by its rate limit waits in P:gthrottled until its
-- permit is due); commands of no group join the ring as '' when it holds groups.
-- Returns the group whose turn it is ('' for the lane's own list), or nil when no group
-- may start or the commands of no group are alone in the ring: then the lane's own list
-- goes alone, as in a lane without groups.
local function next_turn(lane)
  local ring = gring_key(lane)
  if redis.call('LLEN', ring) == 0 then
    return nil
  end
  local q = P .. ':q:' .. lane
  local own = redis.call('LLEN', q) > 0
  if own and redis.call('SISMEMBER', gin_key(lane), '') == 0 then
    redis.call('SADD', gin_key(lane), '')
    redis.call('RPUSH', ring, '')
  end
  local last = get_served(lane)
  set_served(lane, false)
  if last and redis.call('LLEN', ring) > 1 and redis.call('LINDEX', ring, 0) == last then
    redis.call('RPUSH', ring, redis.call('LPOP', ring))
  end
  while true do
    local g = redis.call('LINDEX', ring, 0)
    if not g then
      return nil
    end
    local ok
    if g == '' then
      if own and redis.call('LLEN', ring) == 1 then
        return nil
      end
      ok = own
    else
      ok = group_may_start(lane, g)
      if ok then
        local _, interval, tolerance = group_limits(lane, g)
        if interval > 0 then
          local tat = tonumber(redis.call('GET', gtat_key(lane, g)) or '0')
          if now < tat - tolerance then
            redis.call('ZADD', GTHROTTLED, num(tat - tolerance), lane .. '\n' .. g)
            event4('T', lane, g, 'group', num(math.floor((tat - tolerance) / 1000)))
            ok = false
          end
        end
      end
    end
    if ok then
      return g
    end
    redis.call('LPOP', ring)
    redis.call('SREM', gin_key(lane), g)
  end
end

local claims = {}
local claimed = 0
-- Whether any command has a start-by deadline, read at the first claim.
local has_deadlines = nil
-- The run settings of each lane this trip claims from: lane, settings, lane, ...
local lane_runs = {}
local run_fields = {}
local owner_fields = {}
while claimed < want do
  local top = redis.call('ZRANGE', READY, 0, 1, 'WITHSCORES')
  local lane = top[1]
  if not lane then break end
  local c = lane_cfg(lane)
  if not c then
    redis.call('ZREM', READY, lane)
  else
    local turn_group = next_turn(lane)
    local source = P .. ':q:' .. lane
    if turn_group and turn_group ~= '' then
      source = gq_key(lane, turn_group)
    end
    local k = math.min(want - claimed, c.max - lane_active(lane), redis.call('LLEN', source))
    -- Another ready lane of the same rank: take turns, one command at a time. A boosted
    -- lane with another lane ready also gives one: its next head ranks by its own wait.
    -- Groups of a lane take turns one command at a time too.
    if turn_group or (top[3] and (c.boost or score_rank(top[4]) == score_rank(top[2]))) then
      k = math.min(k, 1)
    end
    local granted, due_at = k, nil
    if c.rl ~= '' and k > 0 then
      granted, due_at = admit(lane, c, k)
    end
    if granted > 0 then
      if not c.sent_run then
        c.sent_run = true
        lane_runs[#lane_runs + 1] = lane
        lane_runs[#lane_runs + 1] = c.run
      end
      local ids = redis.call('LPOP', source, granted)
      local entries = hmget_all(ENTRIES, ids)
      local named = turn_group and turn_group ~= ''
      -- The turn is taken: the group keeps the ring's front while it may start again
      -- (once its slot is counted, below), and goes to the back at the next turn.
      set_served(lane, turn_group or '')
      if named then
        redis.call('HINCRBY', P .. ':lane:' .. lane, 'gpending', -#ids)
        local _, interval = group_limits(lane, turn_group)
        if interval > 0 then
          local gk = gtat_key(lane, turn_group)
          local tat = tonumber(redis.call('GET', gk) or '0')
          if tat < now then tat = now end
          tat = tat + interval
          redis.call('SET', gk, num(tat), 'PX', math.ceil((tat - now) / 1000) + 1)
        end
      elseif turn_group and redis.call('LLEN', source) == 0 then
        redis.call('LPOP', gring_key(lane))
        redis.call('SREM', gin_key(lane), '')
      end
      -- A command past its start-by deadline is not claimed: it expires. One that starts
      -- is no longer subject to its deadline.
      if has_deadlines == nil then
        has_deadlines = redis.call('EXISTS', DEADLINES) == 1
      end
      if has_deadlines then
        local by = redis.call('ZMSCORE', DEADLINES, unpack(ids))
        local starting = {}
        for j, id in ipairs(ids) do
          if by[j] and entries[j] then
            if tonumber(by[j]) <= now then
              expire_command(id, entries[j], now)
              entries[j] = false
            else
              starting[#starting + 1] = id
            end
          end
        end
        if #starting > 0 then
          call_sliced('ZREM', DEADLINES, starting)
          call_sliced('HDEL', START_BY, starting)
        end
      end
      local first_token = redis.call('INCRBY', P .. ':fence', #ids) - #ids
      local started = num(now)
      for j, id in ipairs(ids) do
        local entry = entries[j]
        if entry then
          local token = first_token + j
          add_active(lane, 1)
          if named then
            redis.call('HINCRBY', gact_key(lane), turn_group, 1)
          end
          local _, attempts = string.match(entry, HEAD)
          if events_enabled() then
            event4('B', id, lane, entry_type(entry), tonumber(attempts) + 1)
          end
          local base = #claims
          claims[base + 1] = id
          claims[base + 2] = token
          claims[base + 3] = entry
          run_fields[#run_fields + 1] = id
          run_fields[#run_fields + 1] = token .. '|' .. started
          owner_fields[#owner_fields + 1] = id
          owner_fields[#owner_fields + 1] = wid
          claimed = claimed + 1
        end
      end
      if named then
        if not group_may_start(lane, turn_group) then
          redis.call('LPOP', gring_key(lane))
          redis.call('SREM', gin_key(lane), turn_group)
        end
        group_touch(lane, turn_group)
      end
    end
    if due_at then
      throttle(lane, due_at)
      event4('T', lane, '', 'lane', num(math.floor(due_at / 1000)))
    else
      refresh(lane, true)
    end
  end
end
for lane in pairs(served_dirty) do
  if served[lane] then
    redis.call('HSET', P .. ':lane:' .. lane, 'gserved', served[lane])
  else
    redis.call('HDEL', P .. ':lane:' .. lane, 'gserved')
  end
end
if #run_fields > 0 then
  call_sliced('HSET', RUNNING, run_fields)
  call_sliced('HSET', OWNER, owner_fields)
end
if claimed < want then
  redis.call('SADD', P .. ':idle', wid)
end
local ready = redis.call('ZCARD', READY)
if ready > 0 then
  -- Claimable work this worker did not take: wake others.
  wake_idle(ready)
end
flush(ttl)

-- 6. When to look again without being woken: the next due retry or delayed start, the
-- next start-by deadline, the end of the next throttle, or the next lease expiry of
-- another worker.
local next_due = -1
local function consider(zkey, skip)
  local first = redis.call('ZRANGE', zkey, 0, 1, 'WITHSCORES')
  for j = 1, #first, 2 do
    if first[j] ~= skip then
      local at = tonumber(first[j + 1])
      if next_due < 0 or at < next_due then next_due = at end
      return
    end
  end
end
consider(DELAYED, nil)
consider(DEADLINES, nil)
consider(THROTTLED, nil)
consider(GTHROTTLED, nil)
consider(W, wid)
local wait_ms = -1
if next_due >= 0 then
  wait_ms = math.max(0, math.ceil((next_due - now) / 1000))
end
-- 7. The earliest next instant of the recurring schedules (ms, '' for none): the worker's
-- schedule task sleeps until the earliest it knows of, and hears of an earlier one here.
local first_schedule = redis.call('ZRANGE', SCHED_NEXT, 0, 0, 'WITHSCORES')
return {'ok', wait_ms, claims, cancels, stale, lane_runs, given_back, first_schedule[2] or ''}
