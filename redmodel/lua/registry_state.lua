-- Index states of one prefix's registry (redmodel/_registry.py).
-- KEYS[1]: the registry hash. ARGV: triples of a state field, the state it must have now
-- and the state it gets ('' deletes it), then the record's new version (a random token the
-- client makes: docs/migrations.md, "What is recorded"), written when a field changed. A
-- field whose state is not the expected one ('': absent; '*': any state but absent) is
-- left alone. Answers how many fields changed, or -1 (nothing changed) while a bucket move
-- is under way (the `moving` field: store.migrate_buckets).
-- The version written is the token, '.', and the count: a resend of this very call (its
-- first run changed something, its reply was lost) finds it and answers that count again,
-- whatever changed since (a bucket move, or those states' own change, would answer -1 or
-- 0 for a write that was applied: 32C F1). A first run that changed nothing wrote nothing;
-- its resend runs as a first run.
--! include acl_lib
local n = #ARGV - #ARGV % 3
if #ARGV > n then
  local now = redis.call('HGET', KEYS[1], 'version')
  local mine = ARGV[#ARGV] .. '.'
  if now and string.sub(now, 1, #mine) == mine then
    return tonumber(string.sub(now, #mine + 1))
  end
end
if redis.call('HGET', KEYS[1], 'moving') then return -1 end
-- the HGETs, HSETs and HDELs of the loop: each allowed before the first write (acl_lib)
acl('hget', KEYS[1])
acl('hset', KEYS[1])
acl('hdel', KEYS[1])
acl_ok()
local changed = 0
for i = 1, n, 3 do
  local now = redis.call('HGET', KEYS[1], ARGV[i])
  if not now then now = '' end
  if now == ARGV[i + 1] or (ARGV[i + 1] == '*' and now ~= '') then
    if ARGV[i + 2] == '' then
      redis.call('HDEL', KEYS[1], ARGV[i])
    else
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    end
    changed = changed + 1
  end
end
if changed > 0 and #ARGV > n then
  redis.call('HSET', KEYS[1], 'version', ARGV[#ARGV] .. '.' .. changed)
end
return changed
