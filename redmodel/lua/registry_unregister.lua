-- Unregister a prefix (redmodel/_indexes/_registry.py): DEL of its registry hash, unless a
-- bucket move is under way (the `moving` field: store.migrate_buckets), which keeps every
-- store from using the prefix until the move ends.
-- KEYS[1]: the registry hash. Answers DEL's count, or {'moving', <the move>} (nothing
-- deleted).
local moving = redis.call('HGET', KEYS[1], 'moving')
if moving then return {'moving', moving} end
return redis.call('DEL', KEYS[1])
