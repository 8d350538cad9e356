--! include flat_lib
--! include acl_lib
-- KEYS: the manifest, then the leaves the client expects. ARGV: delimiter, ms | 'persist'.
-- Answers what PEXPIRE / PERSIST of the manifest answered, 0 (no such object) or
-- {'KEYS', missing...} (nothing changed) or {'WRONGTYPE', key, type, 'string'} (the object
-- key holds another type; nothing changed).
local m, wrong = manifest_at(KEYS[1])
if wrong then return wrong end
if not m then return 0 end
local keys = leaves(m, KEYS[1] .. ARGV[1])
local missing = undeclared(keys)
if missing then return missing end
-- each command is allowed before the first (acl_lib)
local cmd = ARGV[2] == 'persist' and 'persist' or 'pexpire'
if #keys > 0 then
  acl(cmd, KEYS[1])
  for _, k in ipairs(keys) do acl(cmd, k) end
  acl_ok()
end
local done
if ARGV[2] == 'persist' then
  done = redis.call('PERSIST', KEYS[1])
else
  done = redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
for _, k in ipairs(keys) do
  if ARGV[2] == 'persist' then redis.call('PERSIST', k) else redis.call('PEXPIRE', k, ARGV[2]) end
end
return done
