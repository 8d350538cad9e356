--! include flat_lib
--! include acl_lib
-- KEYS: the manifest, then the leaves the client expects. ARGV: delimiter.
-- Answers 1 (deleted), 0 (no such object), {'KEYS', missing...} (nothing deleted) or
-- {'WRONGTYPE', key, type, 'string'} (the object key holds another type; nothing deleted).
local m, wrong = manifest_at(KEYS[1])
if wrong then return wrong end
if not m then return 0 end
local keys = leaves(m, KEYS[1] .. ARGV[1])
local missing = undeclared(keys)
if missing then return missing end
-- each DEL is allowed before the first (acl_lib)
acl('del', KEYS[1])
acl_many('del', keys, 1, #keys)
acl_ok()
for _, k in ipairs(keys) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return 1
