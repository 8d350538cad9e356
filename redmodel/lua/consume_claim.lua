--! include clock
--! include consume_lib
-- After a BLMOVE from the queue into the consumer's in-flight list: heartbeat and the
-- delivery count of the member it moved (ARGV[3]); 0 if the member is no longer in the
-- list (the consumer was taken for dead meanwhile and its items returned).
-- Returns {count, in-flight length, {stale consumers}}.
local name, now = ARGV[1], time_ms()
heartbeat(name, tonumber(ARGV[2]), now)
local count = 0
if redis.call('LPOS', KEYS[4], ARGV[3]) then count = taken(ARGV[3]) end
return {count, redis.call('LLEN', KEYS[4]), stale(name, now, 10)}
