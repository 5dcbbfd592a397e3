-- How commands a submitter still awaits ended, read again after its result listener
-- reconnected (a result popped from its list may have been lost with the connection).
-- ARGV: ids. Returns one string per id: 'ok\n<JSON>' or 'err\n<error JSON>' for a
-- finished command, '' for one not finished yet, 'gone' for one Redis no longer knows
-- (its record expired, or the queue was cleared).
local packed = hmget_all(DONE, ARGV)
local out = {}
for j = 1, #ARGV do
  local p = packed[j]
  if p then
    local _, _, _, _, outcome, result = unpack_record(p)
    out[j] = outcome .. '\n' .. result
  elseif redis.call('HEXISTS', ENTRIES, ARGV[j]) == 1 then
    out[j] = ''
  else
    out[j] = 'gone'
  end
end
return out
