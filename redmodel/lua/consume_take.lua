--! include clock
--! include consume_lib
-- One step of a consumer: acknowledge the item it finished (ARGV[3] == '1': LREM of
-- ARGV[4] from its in-flight list), heartbeat (deadline = now + ARGV[2] ms) and, with
-- ARGV[5] == '1', move the head of the queue to the tail of its in-flight list.
-- Returns {acknowledged 0/1, member or nil, its delivery count, in-flight length,
-- {stale consumers}}.
local name, now = ARGV[1], time_ms()
local acked = 0
if ARGV[3] == '1' then
  acked = redis.call('LREM', KEYS[4], 1, ARGV[4])
  if acked > 0 then acknowledged(ARGV[4]) end
end
heartbeat(name, tonumber(ARGV[2]), now)
local member, count = false, 0
if ARGV[5] == '1' then
  member = redis.call('LMOVE', KEYS[1], KEYS[4], 'LEFT', 'RIGHT')
  if member then count = taken(member) end
end
return {acked, member, count, redis.call('LLEN', KEYS[4]), stale(name, now, 10)}
