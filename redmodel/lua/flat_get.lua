--! include flat_lib
-- KEYS: the manifest, then the leaves the client expects. ARGV: delimiter, then (when
-- the client expects a manifest) that manifest and its number of leaves n, which are
-- KEYS[2 .. n + 1] in its order: if it is the stored one, one MGET reads the object.
-- Answers false (no such object), {manifest, leaf values...}, {'KEYS', missing...} or
-- {'WRONGTYPE', key, type, 'string'} (the object key holds another type).
if ARGV[2] then
  local r = redis.call('MGET', unpack(KEYS, 1, tonumber(ARGV[3]) + 1))
  if r[1] == ARGV[2] then return r end
end
local m, wrong = manifest_at(KEYS[1])
if wrong then return wrong end
if not m then return false end
local keys = leaves(m, KEYS[1] .. ARGV[1])
local missing = undeclared(keys)
if missing then return missing end
local out = {m}
for i = 1, #keys, 500 do
  local part = redis.call('MGET', unpack(keys, i, math.min(i + 499, #keys)))
  for j = 1, #part do out[#out + 1] = part[j] end
end
return out
