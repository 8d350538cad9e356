--! include flat_lib
--! include acl_lib
-- KEYS: the manifest, the new leaves (one per value), then any other key the client
-- expects the save to touch (leaves the object had). ARGV: ttl ('' keeps the object's
-- expiry | ms), delimiter, the new manifest, the new leaves' values.
-- Answers 1, or {'KEYS', missing...} (nothing written) when the old manifest names
-- leaves to delete that are not declared, or {'WRONGTYPE', key, type, 'string'} (nothing
-- written) when the object key holds another type.
local n = #ARGV - 3
local old, wrong = manifest_at(KEYS[1])
if wrong then return wrong end
local keep, stale = -1, {}
if old then
  -- an unchanged manifest names exactly the new leaves: nothing is stale (the common
  -- case of a fixed-shape model, with no parsing)
  if old ~= ARGV[3] then
    stale = stale_leaves(old, KEYS[1] .. ARGV[2], n)
    if stale[1] == 'KEYS' then return stale end
  end
  -- (read before the first write: the DELs of leaves leave the manifest's expiry alone)
  if ARGV[1] == '' then keep = redis.call('PTTL', KEYS[1]) end
end
local ms = tonumber(ARGV[1])
if not ms and keep > 0 then ms = keep end
-- more than one command: each (command, key) is allowed before the first write (acl_lib)
if #stale > 0 or ms or n + 1 > 500 then
  if #stale > 0 then acl_many('del', stale, 1, #stale) end
  acl_many('mset', KEYS, 1, n + 1, true)
  if ms then for i = 1, n + 1 do acl('pexpire', KEYS[i]) end end
  acl_ok()
end
for _, k in ipairs(stale) do redis.call('DEL', k) end
set_leaves(1, n, 3)
if ms then
  for i = 1, n + 1 do redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
