-- Unregister a prefix (redmodel/_indexes/_registry.py): delete the model's fields of its
-- registry hash (all but the container:<key> marks of the container registry, which keep
-- refusing a model there), unless a bucket move is under way (the `moving` field:
-- store.migrate_buckets), which keeps every store from using the prefix until it ends.
-- KEYS[1]: the registry hash. Answers 1 if a model's record was there, 0 if not, or
-- {'moving', <the move>} (nothing deleted).
local moving = redis.call('HGET', KEYS[1], 'moving')
if moving then return {'moving', moving} end
local all = redis.call('HGETALL', KEYS[1])  -- the commands an app's ACL rule grants
local gone = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 10) ~= 'container:' then gone[#gone + 1] = all[i] end
end
if #gone == 0 then return 0 end
if #gone * 2 == #all then return redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[1], unpack(gone))
return 1
