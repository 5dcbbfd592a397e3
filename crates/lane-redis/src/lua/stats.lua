-- Counts for every lane and the queue. Returns {lanes, delayed, workers, idle, stats}
-- where lanes holds 12 fields per lane: id, priority, max, pending, active, paused,
-- throttled, effective priority (after the boost of its head command), delayed,
-- expired, rejected_full (lifetime counts) and max_waiting ('' unbounded).
local lanes = redis.call('HKEYS', P .. ':lanes')
local out = {}
for _, lane in ipairs(lanes) do
  local c = lane_cfg(lane)
  if c then
    out[#out + 1] = lane
    out[#out + 1] = c.prio
    out[#out + 1] = c.max
    out[#out + 1] = redis.call('LLEN', P .. ':q:' .. lane) + group_pending_total(lane)
    out[#out + 1] = lane_active(lane)
    out[#out + 1] = c.paused and 1 or 0
    out[#out + 1] = is_throttled(lane) and 1 or 0
    out[#out + 1] = effective_prio(lane, c, false)
    local counts = redis.call('HMGET', P .. ':lane:' .. lane, 'delayed', 'expired',
      'rejected_full', 'max_waiting')
    out[#out + 1] = tonumber(counts[1] or '0')
    out[#out + 1] = tonumber(counts[2] or '0')
    out[#out + 1] = tonumber(counts[3] or '0')
    out[#out + 1] = counts[4] or ''
  end
end
return {
  out,
  redis.call('ZCARD', DELAYED),
  redis.call('ZCARD', P .. ':workers'),
  redis.call('SCARD', P .. ':idle'),
  redis.call('HGETALL', P .. ':stats'),
}
