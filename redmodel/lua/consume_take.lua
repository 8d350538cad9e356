#!lua flags=allow-oom
--! include clock
--! include consume_lib
-- One step of a consumer: acknowledge the item it finished (ARGV[3] == '1': LREM of
-- ARGV[4] from its in-flight list), heartbeat (deadline = now + ARGV[2] ms) and, with
-- ARGV[5] == '1', move the head of the queue to the tail of its in-flight list.
-- Returns {acknowledged 0/1, member or nil, its delivery count, in-flight length,
-- {stale consumers}, registered 0/1}.
--
-- This is the only place an item enters an in-flight list, and only while its consumer
-- is registered: recovery and leaving empty a list in the same script that unregisters
-- its consumer, so every item in an in-flight list belongs to a registered consumer,
-- which recovery reaches. A consumer that is not registered (it was taken for dead and
-- its items returned, or it left, and this call arrived late) changes nothing here: it
-- answers registered = 0 and the consumer registers again (consume_takeback) first.
local name, now = ARGV[1], time_ms()
want_consume_keys()  -- every key's type before the first write (types_lib)
if not redis.call('ZSCORE', KEYS[2], name) then
  return {0, false, 0, redis.call('LLEN', KEYS[4]), {}, 0}
end
-- every command below allowed before the first write (acl_lib)
if ARGV[3] == '1' then acl('lrem', KEYS[4]) end
acl_marks()
acl('zadd', KEYS[2])
if ARGV[5] == '1' then acl('lmove', KEYS[1], KEYS[4]) end
acl('llen', KEYS[4])
acl('zrangebyscore', KEYS[2])
acl_ok()
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
return {acked, member, count, redis.call('LLEN', KEYS[4]), stale(name, now, 10), 1}
