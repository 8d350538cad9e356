-- Unregister a prefix (redmodel/_indexes/_registry.py), in two calls of one unregister, so
-- that a resend of either after a lost reply answers as its first run did (32C F1: one
-- script that deletes the record leaves nothing by which its resend could tell that it
-- ran, and answered "no record" for the record it deleted):
--   'mark': marks the model's record with the field `unregister` = this call's token (a
--     random value the client makes per unregister call) and answers 1, or answers 0
--     when there is no model record (none, or only container:<key> marks); a resend
--     finds its own token and answers 1 again;
--   'drop': deletes the model's fields of the hash (all but the container:<key> marks of
--     the container registry, which keep refusing a model there) if the record holds an
--     `unregister` token, this call's or any other's: someone asked for the record to
--     go and no registration came since (every script that (re)writes the record's
--     owner/schema, registry.lua and a bucket move's record, deletes the field in the
--     same step; 32G F2: a drop that needed its own token did nothing when a racing
--     unregister marked after it and then stopped before its own drop). Answers 1 if
--     it deleted, 0 if not (a resend: deleted already; a registration came since the
--     marks: it stays).
-- Both refuse while a bucket move is under way (the `moving` field: store.migrate_buckets),
-- which keeps every store from using the prefix until it ends: {'moving', <the move>},
-- nothing written.
-- KEYS[1]: the registry hash. ARGV[1]: 'mark' or 'drop'; ARGV[2]: the call's token.
local moving = redis.call('HGET', KEYS[1], 'moving')
if moving then return {'moving', moving} end
local token = ARGV[2]
if ARGV[1] == 'mark' then
  if token and redis.call('HGET', KEYS[1], 'unregister') == token then return 1 end
  local all = redis.call('HGETALL', KEYS[1])  -- the commands an app's ACL rule grants
  for i = 1, #all, 2 do
    local f = all[i]
    if string.sub(f, 1, 10) ~= 'container:' and f ~= 'unregister' then
      redis.call('HSET', KEYS[1], 'unregister', token)
      return 1
    end
  end
  return 0
end
if not redis.call('HGET', KEYS[1], 'unregister') then return 0 end
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 10) ~= 'container:' then gone[#gone + 1] = all[i] end
end
if #gone * 2 == #all then return redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[1], unpack(gone))
return 1
