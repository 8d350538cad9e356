#!lua flags=allow-oom
--! include clock
--! include consume_lib
-- A consumer (re)starting, or unsure what a lost reply did: register it (heartbeat) and
-- take back the items of its own in-flight list (at most ARGV[3]), each with its delivery
-- count. It moves nothing into the list. This is the only script that registers a
-- consumer.
-- Returns {{member, count, member, count, ...}, in-flight length, {stale consumers}}.
local name, now = ARGV[1], time_ms()
want_consume_keys()  -- every key's type before the first write (types_lib)
-- every command below allowed before the first write (acl_lib)
acl('zadd', KEYS[2])
acl('lrange', KEYS[4])
acl_marks()
acl('llen', KEYS[4])
acl('zrangebyscore', KEYS[2])
acl_ok()
heartbeat(name, tonumber(ARGV[2]), now)
local out = {}
for _, member in ipairs(redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)) do
  out[#out + 1] = member
  out[#out + 1] = taken_back(member)
end
return {out, redis.call('LLEN', KEYS[4]), stale(name, now, 10)}
