#!lua flags=allow-oom
--! include consume_lib
-- A consumer stops: acknowledge its last item (ARGV[2] == '1': ARGV[3]), return whatever
-- else it holds to the head of the queue, and unregister. Returns how many it returned.
want_consume_keys()  -- every key's type before the first write (types_lib)
-- every command below allowed before the first write (acl_lib)
if ARGV[2] == '1' then acl('lrem', KEYS[4]) end
acl_return_all(KEYS[4])
acl('zrem', KEYS[2])
acl_ok()
if ARGV[2] == '1' then
  if redis.call('LREM', KEYS[4], 1, ARGV[3]) > 0 then acknowledged(ARGV[3]) end
end
local n = return_all(KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
