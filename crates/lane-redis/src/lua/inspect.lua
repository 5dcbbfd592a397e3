-- A command as it is now. ARGV: id.
-- Returns {entry, worker, run, delayed, record}: the unfinished command's entry, its
-- worker and run while it runs, '1' while it waits for a retry or its start time, and the
-- record of a finished command ('' or nil where absent).
local id = ARGV[1]
local entry = redis.call('HGET', ENTRIES, id)
local worker = redis.call('HGET', OWNER, id)
local run = false
if worker then
  run = redis.call('HGET', P .. ':w:' .. worker, id)
end
local delayed = redis.call('ZSCORE', DELAYED, id) and '1' or ''
local record = {false, false, false, false, false, false}
local packed = redis.call('HGET', DONE, id)
if packed then
  local r_entry, r_state, r_worker, r_run, r_outcome, r_result = unpack_record(packed)
  if r_worker == '' then r_worker = false end
  if r_run == '' then r_run = false end
  record = {r_entry, r_state, r_worker, r_run, r_outcome, r_result}
end
return {entry or '', worker or '', run or '', delayed, record}
