-- Cancels a command. ARGV: id, result ttl (ms), the error JSON a cancelled command ends with.
-- Returns 'cancelled' (it was pending or delayed and ended now), 'signalled' (it runs; the
-- durable flag and the worker's cancel set reach the worker), 'finished' or 'unknown'.
local outcome = cancel_command(ARGV[1], ARGV[3])
flush(tonumber(ARGV[2]))
return outcome
