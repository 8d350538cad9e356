#!lua flags=allow-oom
--! include consume_lib
-- A member of the consumer's in-flight list (ARGV[1]) does not decode: move it to the
-- list of rejected members (KEYS[5]) so that no consumer takes it again. Every key's type
-- is checked before the first write (types_lib): a %rejected of another type (left by a
-- Set at this key, or written by another program) fails the call with nothing written,
-- the item still in the in-flight list, never taken out and then not pushed.
want(KEYS[3], 'hash')
want(KEYS[4], 'list')
want(KEYS[5], 'list')
-- the commands after the first write (LREM) allowed before it (acl_lib)
acl('rpush', KEYS[5])
acl('hdel', KEYS[3])
acl_ok()
if redis.call('LREM', KEYS[4], 1, ARGV[1]) > 0 then
  redis.call('RPUSH', KEYS[5], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 1
end
return 0
