-- The model registry of one prefix (redmodel/_registry.py): a hash with the schema text,
-- the owning model's qualified name and one state field per index.
-- KEYS[1]: the registry hash. ARGV[1]: the schema text the client read ('' for none);
-- ARGV[2]: the new schema text; ARGV[3]: the owner; ARGV[4]: the model's key space
-- (prefix .. delimiter); then pairs of an index state field and
-- its new state ('' deletes it), and of other fields: a `was:<digest>` mark, and `version`
-- with the record's new version (a random token the client makes: docs/migrations.md).
-- Writes only if the schema is still the one the client read (so of two processes racing
-- to register, one wins and the other reads the winner's record and decides again), and
-- no bucket move is under way (answers 'MOVING': the client reads again and refuses).
-- A write deletes the `unregister` field (an unregister's mark between its two calls,
-- registry_unregister.lua) in the same step: a registration made after an unregister's
-- mark is never deleted by that unregister's drop (32G F2).
--! include acl_lib
-- a resend of this very call (its first run wrote, its reply was lost): the record holds
-- the version this call writes (a random token per call), so it answers as its first run
-- did, whatever changed since (a container's mark meanwhile would answer 'CONTAINER' to a
-- write that was applied: 31J F1)
local n = #ARGV
if n >= 6 and ARGV[n - 1] == 'version' and redis.call('HGET', KEYS[1], 'version') == ARGV[n]
then
  return 'OK'
end
if redis.call('HGET', KEYS[1], 'moving') then return 'MOVING' end
-- a container recorded at the prefix (a container:<key> field, written by the container
-- registry) whose keys (<key> and <key>:...) the model's key space shares refuses a
-- model's first registration: 'CONTAINER' (the rule of _registry.holds_container: one of
-- the space and <key>: starts the other)
if ARGV[1] == '' then
  local all = redis.call('HGETALL', KEYS[1])  -- the commands an app's ACL rule grants
  local space = ARGV[4]
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 10) == 'container:' then
      local own = string.sub(all[i], 11) .. ':'
      if string.sub(own, 1, #space) == space or string.sub(space, 1, #own) == own then
        return 'CONTAINER'
      end
    end
  end
end
local current = redis.call('HGET', KEYS[1], 'schema')
if not current then current = '' end
if current ~= ARGV[1] then return 'CHANGED' end
-- a schema without its owner is a record redmodel did not write (unreadable: the client
-- reads it again and refuses it); never written over
if current ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if not owner or owner == '' then return 'CHANGED' end
end
-- HSET and HDEL: each allowed before the first write (acl_lib)
local marked = redis.call('HGET', KEYS[1], 'unregister')
acl('hset', KEYS[1])
for i = 5, #ARGV, 2 do if ARGV[i + 1] == '' then acl('hdel', KEYS[1]) end end
if marked then acl('hdel', KEYS[1]) end
acl_ok()
redis.call('HSET', KEYS[1], 'schema', ARGV[2], 'owner', ARGV[3])
if marked then redis.call('HDEL', KEYS[1], 'unregister') end
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 'OK'
