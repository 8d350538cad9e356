-- The record of one container key (redmodel/_container_registry.py): a hash with the
-- container's kind, member type and encoding, written by its first user.
-- KEYS[1]: the record. ARGV: pairs of a field and its value.
-- Writes the record if there is none (and answers an empty list); else answers what it
-- holds, written nothing, for the client to compare.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], unpack(ARGV))
  return {}
end
return redis.call('HGETALL', KEYS[1])
