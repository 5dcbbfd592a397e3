-- Shared by every script. KEYS[1] is the queue's key prefix, a hash tag such as
-- "{a3s-lane}": every key below starts with it, so all of them live in one Redis Cluster
-- slot and each script touches a single node. Times are Redis server microseconds
-- (TIME), so clocks of workers on different machines never matter.
--
-- Counters a script changes many times (running commands per lane, the turn counter,
-- lifetime stats) and the result messages it sends are kept in Lua tables and written
-- once, by flush(), which every script that changes them calls before returning.
--
-- A command that has not finished lives in the hash P:entries (id -> entry, see
-- entry_value) and its id in its lane's list; while it runs, its run (fencing token,
-- attempt, claim time, submitter) lives in its worker's hash P:w:<worker> and its owner
-- in P:owner. Submits, claims and completions touch these with one batched call per
-- round trip; its record (field <id> of the hash P:done, see pack_record) is written
-- once, when the command finishes, in one batched call per script run.
--
-- What is kept of finished commands is each lane's retention (Retention: keep_last,
-- keep_for, in the lane's hash): per lane and final state, the sorted set
-- P:kept:<state>:<lane> (id -> finish time, us) holds the commands a lookup or listing
-- shows, trimmed to keep_last as commands finish; P:finished (id -> expiry, us) is when
-- each record goes, trimmed in batches by every worker round trip. A record is shown
-- only while both say so (record_visible), trimmed or not. Dead letters are kept apart,
-- in P:dead and P:dead:<lane> (id -> failure time), until redriven or purged.
--
-- Lanes with a priority boost are in the set P:boosted; for their commands only, the hash
-- P:since keeps the instant (us) each command became pending, from which the boost of a
-- lane's head command is computed when workers claim.
local P = KEYS[1]
local READY = P .. ':ready'
local THROTTLED = P .. ':throttled'
local ACTIVE = P .. ':active'
local OWNER = P .. ':owner'
local FINISHED = P .. ':finished'
local ENTRIES = P .. ':entries'
local CANCEL = P .. ':cancel'
local DONE = P .. ':done'
local SINCE = P .. ':since'
local BOOSTED = P .. ':boosted'
-- Commands that wait for a time: delayed retries and delayed starts (id -> when due,
-- us). A delayed start has never run (its entry counts 0 attempts) and takes its place at
-- the back of its lane when due; a retry goes to the front. Each lane counts its delayed
-- commands in the field 'delayed' of its hash (see add_delayed).
local DELAYED = P .. ':delayed'
-- Start-by deadlines of commands that have not started yet (id -> deadline, us, Redis
-- clock), and the deadline as the submitter gave it (id -> ms since the Unix epoch, its
-- clock), for the expired command's error and event. A claim takes a command out of
-- both: a command that started once is no longer subject to its deadline.
local DEADLINES = P .. ':deadlines'
local START_BY = P .. ':start_by'
-- Idempotency keys (SubmitOptions::with_key): P:keys maps each key a live command holds
-- (delayed, pending or running) to its id; P:keyed maps the id of each command holding a
-- key to 'watchers\nkey', where watchers are the submits that got it as a duplicate,
-- each 'client:reference ' (they get its result too). finish() frees the key, so both
-- hold only live commands; submit.lua also checks that a key's id is still live.
local KEYS_HELD = P .. ':keys'
local KEYED = P .. ':keyed'

-- Retention::DEFAULT_KEEP_LAST and DEFAULT_KEEP_FOR (us), for lanes declared before
-- lanes kept a retention.
local KEEP_LAST_DEFAULT = 1000
local KEEP_FOR_DEFAULT = 86400000000
-- The most records one trim removes from a lane's kept set, so that a lane declared
-- again with a much smaller keep_last never blocks Redis; the rest goes with later
-- finishes, and lookups show only the newest keep_last meanwhile.
local TRIM_BATCH = 1000

-- The commands of a lane in a final state ('done', 'cancelled', 'expired') a lookup may
-- show, and the lane's dead letters.
local function kept_key(state, lane)
  return P .. ':kept:' .. state .. ':' .. lane
end
local function dead_key(lane)
  return P .. ':dead:' .. lane
end
-- A record's member in P:finished: 'id|state|lane', so that trimming it needs no read
-- of the record (members of older versions are the id alone).
local function expiry_member(id, state, lane)
  return id .. '|' .. state .. '|' .. lane
end

-- Numbers passed to Redis are formatted explicitly: Lua's default keeps 14 digits,
-- too few for microsecond timestamps.
local function num(x)
  return string.format('%.17g', x)
end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The script's instant, read once: every decision of one run uses the same time.
local clock_us = nil
local function clock()
  if clock_us == nil then
    clock_us = now_us()
  end
  return clock_us
end

-- Runs a command that takes many arguments in slices (Lua's unpack has a limit); slices
-- hold an even number of values, so field/value pairs stay together.
local function call_sliced(command, key, values)
  local n = #values
  local i = 1
  while i <= n do
    local last = math.min(i + 999, n)
    redis.call(command, key, unpack(values, i, last))
    i = last + 1
  end
end

-- Lane settings, read once per script run.
local lane_cache = {}
local function lane_cfg(lane)
  local c = lane_cache[lane]
  if c == nil then
    local v = redis.call('HMGET', P .. ':lane:' .. lane,
      'priority', 'max', 'rl', 'rl_n', 'rl_period', 'rl_burst', 'paused',
      'boost_deadline', 'boost_steps', 'run', 'max_waiting', 'when_full', 'wait_ms',
      'keep_last', 'keep_for', 'groups')
    if not v[1] then
      c = false
    else
      c = {
        prio = tonumber(v[1]), max = tonumber(v[2]), rl = v[3] or '',
        n = tonumber(v[4] or '0'), period = tonumber(v[5] or '0'),
        burst = tonumber(v[6] or '0'), paused = (v[7] == '1'), run = v[10] or '',
        -- Bounded lanes: at most max_waiting commands pending and delayed; a submit to a
        -- full lane is refused ('reject') or waits on its producer ('wait', at most
        -- wait_ms, '' for as long as it takes).
        max_waiting = tonumber(v[11] or ''), when_full = v[12] or 'reject',
        wait_ms = v[13] or '',
        -- Retention: finished commands kept per final state, and for how long (us).
        keep_last = tonumber(v[14] or '') or KEEP_LAST_DEFAULT,
        keep_for = tonumber(v[15] or '') or KEEP_FOR_DEFAULT,
      }
      if v[16] and v[16] ~= '' then
        -- Group limits (declare.lua): {d = default, o = {group = limits}}, each limits
        -- {m = max concurrency (0: none), i = rate interval (us, 0: none), t = tolerance}.
        c.groups = cjson.decode(v[16])
      end
      if v[8] then
        -- Steps are 'time before the deadline (us):boost', comma separated.
        local steps = {}
        for t, b in string.gmatch(v[9] or '', '([^:,]+):([^,]+)') do
          steps[#steps + 1] = {tonumber(t), tonumber(b)}
        end
        c.boost = {deadline = tonumber(v[8]), steps = steps}
      end
    end
    lane_cache[lane] = c
  end
  return c
end

-- Running commands per lane (all workers), cached and written by flush().
local active_cache = {}
local active_dirty = {}
local function lane_active(lane)
  local a = active_cache[lane]
  if a == nil then
    a = tonumber(redis.call('HGET', ACTIVE, lane) or '0')
    active_cache[lane] = a
  end
  return a
end
local function add_active(lane, delta)
  active_cache[lane] = lane_active(lane) + delta
  active_dirty[lane] = true
end

-- Whether a lane waits for its rate limit or a timed pause, cached.
local throttle_cache = {}
local function is_throttled(lane)
  local t = throttle_cache[lane]
  if t == nil then
    t = redis.call('ZSCORE', THROTTLED, lane) ~= false
    throttle_cache[lane] = t
  end
  return t
end
local function throttle(lane, untill)
  redis.call('ZREM', READY, lane)
  redis.call('ZADD', THROTTLED, num(untill), lane)
  throttle_cache[lane] = true
end
local function unthrottle(lane)
  redis.call('ZREM', THROTTLED, lane)
  throttle_cache[lane] = false
end

-- A boost for a head command that waited `waited` us (PriorityBoostConfig::boost_for).
local function boost_for(boost, waited)
  if waited >= boost.deadline then
    return 255
  end
  local remaining = boost.deadline - waited
  local best = 0
  for _, step in ipairs(boost.steps) do
    if remaining <= step[1] and step[2] > best then
      best = step[2]
    end
  end
  return best
end

-- A lane's priority after the boost of its head command. A head with no instant (it
-- was pending or running before the lane had a boost) counts from now; `stamp` records
-- that, so later claims count from the same instant.
local function effective_prio(lane, c, stamp)
  if not c.boost then
    return c.prio
  end
  local head = redis.call('LINDEX', P .. ':q:' .. lane, 0)
  if not head then
    return c.prio
  end
  local now = clock()
  local since = redis.call('HGET', SINCE, head)
  if since then
    since = tonumber(since)
  else
    since = now
    if stamp then
      redis.call('HSET', SINCE, head, num(now))
    end
  end
  return math.max(0, c.prio - boost_for(c.boost, math.max(0, now - since)))
end

-- The ready set holds the lanes a worker may claim from now, scored by rank and then
-- by a turn counter. The rank is the effective priority, then the configured one (so a
-- boosted lane that only ties a more urgent lane does not take its turns, as in
-- process); the lowest score is the most urgent lane, and lanes of equal rank take
-- turns.
local TURNS = 4294967296
local function lane_rank(lane, c)
  return effective_prio(lane, c, true) * 256 + c.prio
end
local function score_rank(score)
  return math.floor(tonumber(score) / TURNS)
end
local turn = nil
local function ready_score(rank)
  if turn == nil then
    turn = tonumber(redis.call('GET', P .. ':turn') or '0')
  end
  turn = (turn + 1) % TURNS
  return num(rank * TURNS + turn)
end

-- Puts a lane in the ready set or takes it out; `rotate` sends a lane that stays
-- ready behind the other lanes of its rank. A lane whose rank changed (a new priority,
-- or a boost that grew or ended with a new head) is scored again.
local function refresh(lane, rotate)
  local c = lane_cfg(lane)
  if not c then
    redis.call('ZREM', READY, lane)
    return
  end
  local ready = (not c.paused) and lane_active(lane) < c.max
    and not is_throttled(lane)
    and (redis.call('LLEN', P .. ':q:' .. lane) > 0
      or redis.call('LLEN', P .. ':gring:' .. lane) > 0)
  if ready then
    local rank = lane_rank(lane, c)
    local score = (not rotate) and redis.call('ZSCORE', READY, lane)
    if not score or score_rank(score) ~= rank then
      redis.call('ZADD', READY, ready_score(rank), lane)
    end
  else
    redis.call('ZREM', READY, lane)
  end
end

-- Scores again the ready lanes with a boost whose rank changed since they were scored
-- (their head commands waited longer). Lanes without a boost cost nothing here.
local function rescore_boosted()
  for _, lane in ipairs(redis.call('SMEMBERS', BOOSTED)) do
    local score = redis.call('ZSCORE', READY, lane)
    if score then
      local c = lane_cfg(lane)
      if c then
        local rank = lane_rank(lane, c)
        if score_rank(score) ~= rank then
          redis.call('ZADD', READY, ready_score(rank), lane)
        end
      end
    end
  end
end

-- Records that commands of a boosted lane became pending now.
local function stamp_pending(lane, ids)
  local c = lane_cfg(lane)
  if not (c and c.boost) or #ids == 0 then
    return
  end
  local fields = {}
  local now = num(clock())
  for _, id in ipairs(ids) do
    fields[#fields + 1] = id
    fields[#fields + 1] = now
  end
  call_sliced('HSET', SINCE, fields)
end

-- Wakes up to n idle workers; each blocks on its own wake list. Returns how many.
local function wake_idle(n)
  if n <= 0 then return 0 end
  local workers = redis.call('SPOP', P .. ':idle', n)
  for _, w in ipairs(workers) do
    redis.call('LPUSH', P .. ':wake:' .. w, '1')
  end
  return #workers
end

-- Counts commands entering (n > 0) or leaving (n < 0) the delayed set of a lane.
local function add_delayed(lane, n)
  if n ~= 0 then
    redis.call('HINCRBY', P .. ':lane:' .. lane, 'delayed', n)
  end
end

-- Groups inside a lane (SubmitOptions::with_group). A command of a group has its group
-- in P:group (id -> group) from its submit until it finishes (a dead letter keeps it, for
-- a redrive), and waits in its group's list P:gq:<lane>\n<group> instead of the lane's
-- list; the lane's hash counts these in 'gpending'. Per lane: P:gring:<lane> is the ring
-- of groups whose turn may come (each in it once: P:gin:<lane>; '' stands for the lane's
-- own list, the commands of no group, and joins the ring when a claim finds groups in
-- it); P:gact:<lane> counts each group's running commands (across all workers);
-- P:gpaused:<lane> holds the paused groups; P:gknown:<lane> (all scores 0, so sorted by
-- key) the groups with commands waiting or running, or paused, for listings. A group's
-- rate limit keeps one arrival time (GCRA, us) in P:gtat:<lane>\n<group>, expiring when
-- it no longer matters; a group held back by it leaves the ring and waits in
-- P:gthrottled ('lane\ngroup' -> when its permit is due), which workers look at like
-- the lanes' throttles. The ring is kept lazily: a group that can no longer start
-- leaves it when its turn comes. Lane ids hold no newline and group keys no control
-- character, so '\n' separates them.
local GROUP_OF = P .. ':group'
local GTHROTTLED = P .. ':gthrottled'
local function gq_key(lane, g) return P .. ':gq:' .. lane .. '\n' .. g end
local function gring_key(lane) return P .. ':gring:' .. lane end
local function gin_key(lane) return P .. ':gin:' .. lane end
local function gact_key(lane) return P .. ':gact:' .. lane end
local function gpaused_key(lane) return P .. ':gpaused:' .. lane end
local function gknown_key(lane) return P .. ':gknown:' .. lane end
local function gtat_key(lane, g) return P .. ':gtat:' .. lane .. '\n' .. g end

-- Whether any command has a group (P:group exists), read once per script run.
local grouped_cache = nil
local function any_grouped()
  if grouped_cache == nil then
    grouped_cache = redis.call('EXISTS', GROUP_OF) == 1
  end
  return grouped_cache
end
-- The group of command id, or nil.
local function group_of(id)
  if not any_grouped() then
    return nil
  end
  return redis.call('HGET', GROUP_OF, id) or nil
end

-- A group's limits: max concurrency (nil: none), rate interval and tolerance (us, an
-- interval of 0: no rate limit). Commands of no group ('') have none.
local function group_limits(lane, g)
  if g == '' then
    return nil, 0, 0
  end
  local c = lane_cfg(lane)
  local r = c and c.groups
  if not r then
    return nil, 0, 0
  end
  local l = (type(r.o) == 'table' and r.o[g]) or r.d
  if type(l) ~= 'table' then
    return nil, 0, 0
  end
  local m = tonumber(l.m) or 0
  if m <= 0 then m = nil end
  return m, tonumber(l.i) or 0, tonumber(l.t) or 0
end

local function group_active(lane, g)
  return tonumber(redis.call('HGET', gact_key(lane), g) or '0')
end
local function group_paused(lane, g)
  return redis.call('SISMEMBER', gpaused_key(lane), g) == 1
end
local function group_throttle_until(lane, g)
  local t = redis.call('ZSCORE', GTHROTTLED, lane .. '\n' .. g)
  if t then
    return tonumber(t)
  end
  return nil
end

-- Whether group g may start a command as far as its list, pause, cap and a pending
-- throttle say (its rate limit is checked when its turn comes).
local function group_may_start(lane, g)
  if redis.call('LLEN', gq_key(lane, g)) == 0 or group_paused(lane, g)
    or group_throttle_until(lane, g) then
    return false
  end
  local max = group_limits(lane, g)
  return not max or group_active(lane, g) < max
end

-- Puts the lane's commands of no group ('') at the back of its ring if the ring holds
-- groups and they are not there: they take turns as one group of their own.
local function own_enter_ring(lane)
  if redis.call('LLEN', gring_key(lane)) > 0
    and redis.call('SISMEMBER', gin_key(lane), '') == 0
    and redis.call('LLEN', P .. ':q:' .. lane) > 0 then
    redis.call('SADD', gin_key(lane), '')
    redis.call('RPUSH', gring_key(lane), '')
  end
end

-- Puts group g at the back of its lane's ring if it may start and is not there. A ring
-- that was empty gets the commands of no group first: they waited before any group.
local function group_enter_ring(lane, g)
  if redis.call('SISMEMBER', gin_key(lane), g) == 0 and group_may_start(lane, g) then
    if redis.call('LLEN', gring_key(lane)) == 0
      and redis.call('LLEN', P .. ':q:' .. lane) > 0 then
      redis.call('SADD', gin_key(lane), '')
      redis.call('RPUSH', gring_key(lane), '')
    end
    redis.call('SADD', gin_key(lane), g)
    redis.call('RPUSH', gring_key(lane), g)
  end
end

-- Takes group g out of its lane's ring.
local function group_leave_ring(lane, g)
  if redis.call('SREM', gin_key(lane), g) == 1 then
    redis.call('LREM', gring_key(lane), 1, g)
  end
end

-- Keeps group g listed while it has commands waiting or running, or is paused.
local function group_touch(lane, g)
  if redis.call('LLEN', gq_key(lane, g)) > 0 or group_active(lane, g) > 0
    or group_paused(lane, g) then
    redis.call('ZADD', gknown_key(lane), 0, g)
  else
    redis.call('ZREM', gknown_key(lane), g)
    redis.call('HDEL', gact_key(lane), g)
  end
end

-- Puts command id among its lane's pending commands: in its group's list if it has a
-- group, else in the lane's list; at the front (a retry, a run handed back) or the back.
local function push_pending(lane, id, front, g)
  if g == nil then
    g = group_of(id)
  end
  local op = front and 'LPUSH' or 'RPUSH'
  if g then
    redis.call(op, gq_key(lane, g), id)
    redis.call('HINCRBY', P .. ':lane:' .. lane, 'gpending', 1)
    redis.call('ZADD', gknown_key(lane), 0, g)
    group_enter_ring(lane, g)
  else
    redis.call(op, P .. ':q:' .. lane, id)
    own_enter_ring(lane)
  end
end

-- Takes pending command id out of its lane's (or group's) list.
local function remove_pending(lane, id)
  local g = group_of(id)
  if g then
    if redis.call('LREM', gq_key(lane, g), 1, id) > 0 then
      redis.call('HINCRBY', P .. ':lane:' .. lane, 'gpending', -1)
    end
    group_touch(lane, g)
  else
    redis.call('LREM', P .. ':q:' .. lane, 1, id)
  end
end

-- A run of group g ended: its slot is free.
local function group_release(lane, g)
  if redis.call('HINCRBY', gact_key(lane), g, -1) <= 0 then
    redis.call('HDEL', gact_key(lane), g)
  end
  group_enter_ring(lane, g)
  group_touch(lane, g)
end

-- Commands of a lane waiting in groups.
local function group_pending_total(lane)
  return tonumber(redis.call('HGET', P .. ':lane:' .. lane, 'gpending') or '0')
end

-- A lane's held slot ('held:<id>' in a worker's hash): the lane, and the group after a
-- newline when the command had one. Returns lane, group (or nil).
local function held_value(lane, g)
  if g then
    return lane .. '\n' .. g
  end
  return lane
end
local function split_held(value)
  local lane, g = string.match(value, '^([^\n]*)\n(.*)$')
  if lane then
    return lane, g
  end
  return value, nil
end

-- Lifetime counters, written by flush().
local stats = {}
local function stat(name, n)
  stats[name] = (stats[name] or 0) + (n or 1)
end

-- Result messages per submitter, and finished records to expire, written by flush().
local outbox = {}
local outbox_clients = {}
local finished_entries = {}
-- Records of lanes that keep nothing, finish time and id alternating: flush() gives them
-- the result ttl (see finish()).
local hidden_entries = {}
-- Kept sets to add to, written (and trimmed) by flush(): key -> {limit, entries, state,
-- lane}, where entries alternate score and id and limit is the lane's keep_last (false:
-- no trim, for dead letters).
local kept_adds = {}
local kept_order = {}

-- An unfinished command: lane \n attempts|failures|client|client reference|submitted \n
-- type \n payload, where attempts counts the runs that ended (not the one running now)
-- and submitted is the submit time (ms, Redis clock; absent in entries of older
-- versions). Lane ids and command types never hold a newline (checked when declared and
-- submitted), client ids and references no '|'; the payload comes last and may hold
-- anything. Scripts read only the first two lines and pass the entry on whole: workers
-- and the record get it as it is. HEAD's captures: lane, attempts, failures, client,
-- reference, submitted ('' when absent), and where the type starts.
local HEAD = '^([^\n]*)\n([^|]*)|([^|]*)|([^|]*)|([^|\n]*)|?([^\n]*)\n()'
local function entry_head(lane, attempts, failures, client, cref, submitted)
  local stamp = ''
  if submitted ~= '' then
    stamp = '|' .. submitted
  end
  return lane .. '\n' .. attempts .. '|' .. failures .. '|' .. client .. '|' .. cref .. stamp
end
local function entry_value(lane, attempts, failures, client, cref, submitted, ctype, payload)
  return entry_head(lane, attempts, failures, client, cref, submitted) .. '\n' .. ctype
    .. '\n' .. payload
end
-- Now in whole ms, as entries keep the submit time.
local function clock_ms()
  return string.format('%d', math.floor(clock() / 1000))
end
local function entry_lane(entry)
  return string.match(entry, '^([^\n]*)\n')
end

-- Queues a result message for the submitter's result list: cref \n id \n outcome \n
-- data, outcome 'ok' or 'err'. Workers push progress to the same list from Rust
-- (redis/progress.rs) as cref \n id \n progress \n lane \n JSON.
local function notify(client, cref, id, outcome, data)
  if client and client ~= '' then
    local list = outbox[client]
    if not list then
      list = {}
      outbox[client] = list
      outbox_clients[#outbox_clients + 1] = client
    end
    list[#list + 1] = cref .. '\n' .. id .. '\n' .. outcome .. '\n' .. data
  end
end

-- Events of the queue's commands, for subscribers in any process (RedisQueue::subscribe):
-- each a code and its fields (see events.rs), one per line: no field holds a newline
-- (lanes and types are checked for it, JSON is written without). Collected per script
-- run and written by flush() as one entry of the stream P:events (field 'e'). The stream
-- keeps about EVENTS_KEPT entries.
local EVENTS_KEPT = 10000
local events_out = {}
-- Whether the queue writes events (P:meta events, '0' turns them off), read once per run.
local events_on = nil
local function events_enabled()
  if events_on == nil then
    events_on = redis.call('HGET', P .. ':meta', 'events') ~= '0'
  end
  return events_on
end
-- Events of three and four fields, built by concatenation (no table per event).
local function event3(code, a, b, c)
  if events_enabled() then
    events_out[#events_out + 1] = code .. '\n' .. a .. '\n' .. b .. '\n' .. c
  end
end
local function event4(code, a, b, c, d)
  if events_enabled() then
    events_out[#events_out + 1] = code .. '\n' .. a .. '\n' .. b .. '\n' .. c .. '\n' .. d
  end
end
local function event5(code, a, b, c, d, e)
  if events_enabled() then
    events_out[#events_out + 1] = code .. '\n' .. a .. '\n' .. b .. '\n' .. c .. '\n' .. d
      .. '\n' .. e
  end
end

-- The command type of an entry.
local function entry_type(entry)
  local _, _, _, _, _, _, rest = string.match(entry, HEAD)
  return string.match(entry, '^([^\n]*)', rest)
end

-- Ids whose entry (and cancel flag) flush() removes.
local removed = {}
-- Ids whose group flush() forgets (finished, not dead letters: a redrive needs it).
local ungrouped = {}

-- Finished records to write, id and packed record alternating, written by flush().
local done_fields = {}

-- A finished command's record as one string: the lengths of entry, worker and run,
-- then state, outcome and finish time, then entry, worker, run and result back to back
-- (entries and results may hold any byte, so they are measured, not delimited).
local function pack_record(entry, state, outcome, data, stamp, worker, run)
  worker = worker or ''
  run = run or ''
  return #entry .. ',' .. #worker .. ',' .. #run .. '|' .. state .. '|' .. outcome .. '|'
    .. stamp .. '|' .. entry .. worker .. run .. data
end

-- The fields of a packed record: entry, state, worker, run, outcome, result, finished.
local function unpack_record(packed)
  local le, lw, lr, state, outcome, finished, at =
    string.match(packed, '^(%d+),(%d+),(%d+)|([^|]*)|([^|]*)|([^|]*)|()')
  le, lw, lr = tonumber(le), tonumber(lw), tonumber(lr)
  local entry = string.sub(packed, at, at + le - 1)
  local worker = string.sub(packed, at + le, at + le + lw - 1)
  local run = string.sub(packed, at + le + lw, at + le + lw + lr - 1)
  local result = string.sub(packed, at + le + lw + lr)
  return entry, state, worker, run, outcome, result, finished
end

-- Whether P:keyed exists (any command holds a key), read once per script run.
local keyed_cache = nil
local function any_keyed()
  if keyed_cache == nil then
    keyed_cache = redis.call('EXISTS', KEYED) == 1
  end
  return keyed_cache
end

-- A finished command gives up its key (if it held one: the key is free for the next
-- submit) and its result goes to the submits that got it as a duplicate.
local function release_key(id, outcome, data)
  if not any_keyed() then
    return
  end
  id = tostring(id)
  local held = redis.call('HGET', KEYED, id)
  if not held then
    return
  end
  redis.call('HDEL', KEYED, id)
  local watchers, key = string.match(held, '^([^\n]*)\n(.*)$')
  if key and redis.call('HGET', KEYS_HELD, key) == id then
    redis.call('HDEL', KEYS_HELD, key)
  end
  for client, cref in string.gmatch(watchers or '', '([^ :]+):([^ ]+)') do
    notify(client, cref, id, outcome, data)
  end
end

-- A lane's retention: finished commands kept per final state, and for how long (us).
local function retention_of(lane)
  local c = lane_cfg(lane)
  if not c then
    return KEEP_LAST_DEFAULT, KEEP_FOR_DEFAULT
  end
  return c.keep_last, c.keep_for
end

-- Queues `id` (scored `score`) for the kept set `key` of `state` and `lane`, trimmed to
-- `limit` by flush().
local function keep_in(key, limit, score, id, state, lane)
  local add = kept_adds[key]
  if not add then
    add = {limit = limit, entries = {}, state = state, lane = lane}
    kept_adds[key] = add
    kept_order[#kept_order + 1] = key
  end
  add.entries[#add.entries + 1] = score
  add.entries[#add.entries + 1] = id
end

-- Records a command's final outcome ('ok' with a JSON value, 'err' with a JSON error),
-- its entry and its last run (worker and run 'token|claimed at', or nil for a command
-- that never ran), and sends the outcome to the submitter. Its lane keeps the record as
-- its retention says; a dead letter is kept apart, without expiry.
local function finish(id, state, outcome, data, now, entry, worker, run, start_by_ms)
  local lane, _, _, client, cref = string.match(entry, HEAD)
  if state == 'done' then
    local claimed = tonumber(string.match(run or '', '|(%d+)$') or now)
    event3('C', id, lane, num(now - claimed))
  elseif state == 'dead' then
    event4('F', id, lane, entry_type(entry), data)
  elseif state == 'expired' then
    event4('E', id, lane, entry_type(entry), start_by_ms)
  else
    event4('X', id, lane, run and 1 or 0, data)
  end
  local stamp = num(now)
  done_fields[#done_fields + 1] = id
  done_fields[#done_fields + 1] = pack_record(entry, state, outcome, data, stamp, worker, run)
  if state == 'dead' then
    keep_in(P .. ':dead', false, stamp, id)
    keep_in(dead_key(lane), false, stamp, id)
  else
    local keep_last, keep_for = retention_of(lane)
    if keep_last > 0 then
      keep_in(kept_key(state, lane), keep_last, stamp, id, state, lane)
      finished_entries[#finished_entries + 1] = num(now + keep_for)
      finished_entries[#finished_entries + 1] = expiry_member(id, state, lane)
    else
      -- A lane that keeps nothing still leaves the outcome, in no kept set (so no
      -- lookup or listing shows it), for a producer whose result listener lost it with
      -- a broken connection and reads it again (outcomes.lua): it lives as long as an
      -- undelivered result waits in the producer's result list, the result ttl.
      hidden_entries[#hidden_entries + 1] = now
      hidden_entries[#hidden_entries + 1] = expiry_member(id, state, lane)
    end
  end
  removed[#removed + 1] = id
  if state ~= 'dead' and any_grouped() then
    ungrouped[#ungrouped + 1] = id
  end
  notify(client, cref, id, outcome, data)
  release_key(id, outcome, data)
end

-- Rewrites an entry with new counts (after a lost or failed run); returns its lane.
local function requeue_entry(id, entry, attempts, failures)
  local lane, _, _, client, cref, submitted, rest = string.match(entry, HEAD)
  redis.call('HSET', ENTRIES, id, entry_head(lane, attempts, failures, client, cref, submitted)
    .. '\n' .. string.sub(entry, rest))
  return lane
end

local function flush(ttl_ms)
  for lane in pairs(active_dirty) do
    redis.call('HSET', ACTIVE, lane, active_cache[lane])
  end
  active_dirty = {}
  if turn ~= nil then
    redis.call('SET', P .. ':turn', turn)
  end
  for name, n in pairs(stats) do
    redis.call('HINCRBY', P .. ':stats', name, n)
  end
  stats = {}
  if #done_fields > 0 then
    call_sliced('HSET', DONE, done_fields)
    done_fields = {}
  end
  for j = 1, #hidden_entries, 2 do
    finished_entries[#finished_entries + 1] = num(hidden_entries[j] + ttl_ms * 1000)
    finished_entries[#finished_entries + 1] = hidden_entries[j + 1]
  end
  hidden_entries = {}
  if #finished_entries > 0 then
    call_sliced('ZADD', FINISHED, finished_entries)
    finished_entries = {}
  end
  -- After the records and their expiries: a trim may take a record written just now.
  for _, key in ipairs(kept_order) do
    local add = kept_adds[key]
    call_sliced('ZADD', key, add.entries)
    if add.limit then
      local excess = redis.call('ZCARD', key) - add.limit
      if excess > 0 then
        local popped = redis.call('ZPOPMIN', key, math.min(excess, TRIM_BATCH))
        local ids = {}
        local members = {}
        for j = 1, #popped, 2 do
          ids[#ids + 1] = popped[j]
          members[#members + 1] = expiry_member(popped[j], add.state, add.lane)
        end
        call_sliced('HDEL', DONE, ids)
        call_sliced('ZREM', FINISHED, members)
      end
    end
  end
  kept_adds = {}
  kept_order = {}
  if #removed > 0 then
    call_sliced('HDEL', ENTRIES, removed)
    if redis.call('SCARD', CANCEL) > 0 then
      call_sliced('SREM', CANCEL, removed)
    end
    if redis.call('EXISTS', SINCE) == 1 then
      call_sliced('HDEL', SINCE, removed)
    end
    if redis.call('EXISTS', START_BY) == 1 then
      call_sliced('HDEL', START_BY, removed)
      call_sliced('ZREM', DEADLINES, removed)
    end
    removed = {}
  end
  if #ungrouped > 0 then
    call_sliced('HDEL', GROUP_OF, ungrouped)
    ungrouped = {}
  end
  if #events_out > 0 then
    redis.call('XADD', P .. ':events', 'MAXLEN', '~', EVENTS_KEPT, '*', 'e',
      table.concat(events_out, '\n'))
    events_out = {}
  end
  for _, client in ipairs(outbox_clients) do
    local list = P .. ':results:' .. client
    call_sliced('RPUSH', list, outbox[client])
    redis.call('PEXPIRE', list, ttl_ms)
  end
  outbox = {}
  outbox_clients = {}
end

-- HMGET with many fields, in slices; returns the values in order.
local function hmget_all(key, fields)
  local values = {}
  local i = 1
  while i <= #fields do
    local last = math.min(i + 999, #fields)
    local part = redis.call('HMGET', key, unpack(fields, i, last))
    for j = 1, #part do
      values[#values + 1] = part[j]
    end
    i = last + 1
  end
  return values
end

-- Cancels a command: one still waiting (pending or delayed) ends now with the error
-- JSON `err`; a running one is flagged, and its worker is told and woken. Returns
-- 'cancelled', 'signalled', 'finished' or 'unknown'.
local function cancel_command(id, err)
  local worker = redis.call('HGET', OWNER, id)
  if worker then
    redis.call('SADD', CANCEL, id)
    redis.call('SADD', P .. ':wcancel:' .. worker, id)
    redis.call('LPUSH', P .. ':wake:' .. worker, 'c')
    return 'signalled'
  end
  local entry = redis.call('HGET', ENTRIES, id)
  if entry then
    local lane = entry_lane(entry)
    if redis.call('ZREM', DELAYED, id) == 0 then
      remove_pending(lane, id)
    else
      add_delayed(lane, -1)
    end
    stat('cancelled')
    finish(id, 'cancelled', 'err', err, now_us(), entry, nil, nil)
    refresh(lane, false)
    return 'cancelled'
  end
  -- As in process: an id the queue gave out whose command is gone has finished, kept or
  -- not.
  local n = tonumber(id)
  if redis.call('HEXISTS', DONE, id) == 1
    or (n and n >= 1 and n <= tonumber(redis.call('GET', P .. ':seq') or '0')) then
    return 'finished'
  end
  return 'unknown'
end

-- Deletes expired records: `members` of P:finished (see expiry_member), their records
-- and their places in the kept sets.
local function forget_expired(members)
  local ids = {}
  local by_key = {}
  local keys = {}
  for _, member in ipairs(members) do
    local id, state, lane = string.match(member, '^([^|]*)|([^|]*)|(.*)$')
    if id then
      local key = kept_key(state, lane)
      local list = by_key[key]
      if not list then
        list = {}
        by_key[key] = list
        keys[#keys + 1] = key
      end
      list[#list + 1] = id
    else
      id = member
    end
    ids[#ids + 1] = id
  end
  call_sliced('HDEL', DONE, ids)
  for _, key in ipairs(keys) do
    call_sliced('ZREM', key, by_key[key])
  end
  call_sliced('ZREM', FINISHED, members)
end

-- Whether a lookup or listing shows a finished record (state, lane, finish time in us):
-- a dead letter always; another while its lane keeps it: among the newest keep_last of
-- its state, finished within keep_for (as the lane says now), and before its own
-- expiry, whether or not a trim removed it yet.
local function record_visible(id, state, lane, finished, now)
  if state == 'dead' then
    return true
  end
  local keep_last, keep_for = retention_of(lane)
  if keep_last == 0 or finished + keep_for <= now then
    return false
  end
  local rank = redis.call('ZREVRANK', kept_key(state, lane), id)
  if not rank or rank >= keep_last then
    return false
  end
  local expires = redis.call('ZSCORE', FINISHED, expiry_member(id, state, lane))
  return expires ~= false and tonumber(expires) > now
end

-- One command as inspect.lua and list.lua return it, appended to `out`: id, state
-- ('pending', 'delayed', 'running', or a record's), entry, worker, run, finish time
-- (us), outcome and data, '' where absent.
local function describe_live(out, id, state, entry, worker, run)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, state, entry, worker or ''
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = run or '', '', '', ''
end
local function describe_record(out, id, packed)
  local entry, state, worker, run, outcome, result, finished = unpack_record(packed)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = id, state, entry, worker
  out[n + 5], out[n + 6], out[n + 7], out[n + 8] = run, finished, outcome, result
end

-- Ends a command whose start-by deadline passed before it started, once it left its
-- lane or the delayed set: its submitter gets an 'expired' error, subscribers the event
-- 'E', and the lane counts it (field 'expired' of its hash).
local function expire_command(id, entry, now)
  local lane = entry_lane(entry)
  local by = redis.call('HGET', START_BY, id) or '0'
  local err = cjson.encode({
    kind = 'expired',
    message = 'command ' .. id .. " in lane '" .. lane .. "' had not started by its start-by "
      .. 'deadline (' .. by .. ' ms since the Unix epoch), so it never ran',
  })
  stat('expired')
  redis.call('HINCRBY', P .. ':lane:' .. lane, 'expired', 1)
  finish(id, 'expired', 'err', err, now, entry, nil, nil, by)
end

-- Hands back runs Redis holds for worker w: `raw` is the field/value list of its hash
-- (HGETALL), less the fields `keep` says the worker still has. A held slot is freed; a
-- command goes back to the front of its lane (oldest first), or ends as cancelled with
-- `cancelled` (error JSON) if a cancel was requested. `counted`: the run counts as an
-- attempt (it may have run) or not (a claim the worker never saw). Returns the fields
-- handled and how many commands there were.
local function hand_back(w, raw, keep, counted, cancelled, now)
  local runs = {}
  local fields = {}
  for j = 1, #raw, 2 do
    local field, value = raw[j], raw[j + 1]
    if not keep(field) then
      fields[#fields + 1] = field
      if string.sub(field, 1, 5) == 'held:' then
        local lane, g = split_held(value)
        add_active(lane, -1)
        if g then
          group_release(lane, g)
        end
        refresh(lane, false)
      else
        runs[#runs + 1] = {id = field, run = value}
      end
    end
  end
  table.sort(runs, function(a, b) return tonumber(a.id) > tonumber(b.id) end)
  local ids = {}
  for j, item in ipairs(runs) do
    ids[j] = item.id
  end
  local entries = hmget_all(ENTRIES, ids)
  for j, item in ipairs(runs) do
    local id, run, entry = item.id, item.run, entries[j]
    if entry then
      local lane, attempts, failures = string.match(entry, HEAD)
      add_active(lane, -1)
      local g = group_of(id)
      if g then
        group_release(lane, g)
      end
      if redis.call('SISMEMBER', CANCEL, id) == 1 then
        stat('cancelled')
        finish(id, 'cancelled', 'err', cancelled, now, entry, w, run)
      elseif counted then
        requeue_entry(id, entry, tonumber(attempts) + 1, failures)
        push_pending(lane, id, true, g or false)
        stat('requeued')
      else
        push_pending(lane, id, true, g or false)
        stat('given_back')
      end
      refresh(lane, false)
    end
  end
  if #ids > 0 then
    call_sliced('HDEL', OWNER, ids)
  end
  return fields, #ids
end

-- Takes a worker out: its running commands go back to the front of their lanes
-- (oldest first; the lost run counts as an attempt), or end as cancelled if a cancel was
-- requested; its held slots are freed.
local function remove_worker(w, now)
  local key = P .. ':w:' .. w
  hand_back(w, redis.call('HGETALL', key), function() return false end, true,
    '{"kind":"cancelled","message":"cancelled; its worker stopped before it finished"}', now)
  redis.call('DEL', key, P .. ':wake:' .. w, P .. ':wcancel:' .. w)
  redis.call('SREM', P .. ':idle', w)
  redis.call('ZREM', P .. ':workers', w)
end

-- Recurring schedules (queue/schedules.rs, worker/schedules.rs): P:schedules maps each
-- name to its Schedule as JSON, as put (scripts never rewrite it: they compare it);
-- P:sched_state maps it to where it stands, 'paused|next|last fired|last command|fired|
-- skipped' (instants in ms since the Unix epoch, '' where absent); P:sched_next holds
-- the next instant (ms) of each schedule that has one and is not paused, so the
-- earliest is one lookup. Schedule names hold no control character (Schedule::validate).
local SCHEDULES = P .. ':schedules'
local SCHED_STATE = P .. ':sched_state'
local SCHED_NEXT = P .. ':sched_next'

local function sched_state(name)
  local raw = redis.call('HGET', SCHED_STATE, name)
  if not raw then
    return nil
  end
  local paused, nxt, last, last_id, fired, skipped =
    string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if not paused then
    return nil
  end
  return {paused = paused == '1', next = nxt, last = last, last_id = last_id,
    fired = tonumber(fired) or 0, skipped = tonumber(skipped) or 0}
end

local function pack_sched_state(s)
  return (s.paused and '1' or '0') .. '|' .. s.next .. '|' .. s.last .. '|' .. s.last_id
    .. '|' .. string.format('%d', s.fired) .. '|' .. string.format('%d', s.skipped)
end

-- Writes a schedule's state and its place in P:sched_next.
local function save_sched_state(name, s)
  redis.call('HSET', SCHED_STATE, name, pack_sched_state(s))
  if s.paused or s.next == '' then
    redis.call('ZREM', SCHED_NEXT, name)
  else
    redis.call('ZADD', SCHED_NEXT, s.next, name)
  end
end

-- Wakes one worker (an idle one if any, else any live one) so that its next round trip
-- tells it about a timer earlier than it knew of; with `all`, every idle worker (a
-- schedule put or resumed: each worker's schedule task hears of it, not only one that
-- may be about to die).
local function wake_one_worker(all)
  local n = 1
  if all then
    n = redis.call('SCARD', P .. ':idle')
  end
  if wake_idle(n) == 0 then
    local any = redis.call('ZRANGE', P .. ':workers', 0, 0)
    if any[1] then
      redis.call('LPUSH', P .. ':wake:' .. any[1], '1')
    end
  end
end
