--! include flat_lib
-- KEYS: the manifest, the new leaves (one per value), then any other key the client
-- expects the save to touch (leaves the object had). ARGV: ttl ('' keeps the object's
-- expiry | ms), delimiter, the new manifest, the new leaves' values.
-- Answers 1, or {'KEYS', missing...} (nothing written) when the old manifest names
-- leaves to delete that are not declared, or {'WRONGTYPE', key, type, 'string'} (nothing
-- written) when the object key holds another type.
local n = #ARGV - 3
local old, wrong = manifest_at(KEYS[1])
if wrong then return wrong end
local keep = -1
if old then
  -- an unchanged manifest names exactly the new leaves: nothing is stale (the common
  -- case of a fixed-shape model, with no parsing)
  if old ~= ARGV[3] then
    local stale = stale_leaves(old, KEYS[1] .. ARGV[2], n)
    if stale[1] == 'KEYS' then return stale end
    for _, k in ipairs(stale) do redis.call('DEL', k) end
  end
  if ARGV[1] == '' then keep = redis.call('PTTL', KEYS[1]) end
end
set_leaves(1, n, 3)
local ms = tonumber(ARGV[1])
if not ms and keep > 0 then ms = keep end
if ms then
  for i = 1, n + 1 do redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
