#!lua flags=allow-oom
--! include clock
--! include consume_lib
-- Return the items of consumers whose deadline has passed to the head of the queue and
-- unregister them. ARGV[1] is how many stale consumers one call handles; for i >= 1,
-- KEYS[3 + i] is the in-flight list of the consumer named ARGV[1 + i]. If a stale
-- consumer was not declared, nothing is written and the reply is {'NEED', {names}}: the
-- caller sends again with their lists. Otherwise {'DONE', items returned}.
local now, limit = time_ms(), tonumber(ARGV[1])
local declared = {}
for i = 2, #ARGV do declared[ARGV[i]] = true end
local missing = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now,
                                 'LIMIT', 0, limit)) do
  if not declared[name] then missing[#missing + 1] = name end
end
if #missing > 0 then return {'NEED', missing} end
-- every key's type before the first write (types_lib): the queue, the consumers, the
-- marks and each in-flight list
want_consume_keys()
for i = 5, #KEYS do want(KEYS[i], 'list') end
-- every command below allowed before the first write (acl_lib)
acl('zscore', KEYS[2])
for i = 2, #ARGV do acl_return_all(KEYS[i + 2]) end
acl('zrem', KEYS[2])
acl_ok()
local n = 0
for i = 2, #ARGV do
  local deadline = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if deadline and tonumber(deadline) < now then
    n = n + return_all(KEYS[i + 2])
    redis.call('ZREM', KEYS[2], ARGV[i])
  end
end
return {'DONE', n}
