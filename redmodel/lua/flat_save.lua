--! include flat_lib
-- KEYS: the manifest, the new leaves (one per value), then any other key the client
-- expects the save to touch (leaves the object had). ARGV: ttl ('' keeps the object's
-- expiry | ms), delimiter, the new manifest, the new leaves' values.
-- Answers 1, or {'KEYS', missing...} (nothing written) when the old manifest names
-- leaves to delete that are not declared.
local base = KEYS[1] .. ARGV[2]
local n = #ARGV - 3
local old = redis.call('GET', KEYS[1])
local stale = {}
if old then
  local new = {}
  for i = 2, n + 1 do new[KEYS[i]] = true end
  for _, k in ipairs(leaves(old, base)) do
    if not new[k] then stale[#stale + 1] = k end
  end
  local missing = undeclared(stale)
  if missing then return missing end
end
local keep = -1
if ARGV[1] == '' then keep = redis.call('PTTL', KEYS[1]) end
for _, k in ipairs(stale) do redis.call('DEL', k) end
redis.call('SET', KEYS[1], ARGV[3])
local args = {}
for i = 2, n + 1 do
  args[#args + 1] = KEYS[i]
  args[#args + 1] = ARGV[i + 2]
  if #args >= 1000 then redis.call('MSET', unpack(args)); args = {} end
end
if #args > 0 then redis.call('MSET', unpack(args)) end
local ms = tonumber(ARGV[1])
if not ms and keep > 0 then ms = keep end
if ms then
  for i = 1, n + 1 do redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
