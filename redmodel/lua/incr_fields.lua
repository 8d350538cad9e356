local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return {0} end
local n = tonumber(ARGV[1])
local stored, after = {}, {}
local function current(f)
  if stored[f] == nil then
    local raw = redis.call('HGET', key, f)
    local v = 0
    if raw then v = tonumber(raw) end
    if v == nil then return nil end
    stored[f] = {raw or '0', v}
  end
  return stored[f][2]
end
for i = 0, n - 1 do
  local f = ARGV[2 + 3 * i]
  local v = current(f)
  if v == nil then return {3, f} end
  after[f] = (after[f] or v) + tonumber(ARGV[4 + 3 * i])
end
local m = tonumber(ARGV[2 + 3 * n])
local base = 3 + 3 * n
for j = 0, m - 1 do
  local f, kind = ARGV[base + 3 * j], ARGV[base + 1 + 3 * j]
  local bound = tonumber(ARGV[base + 2 + 3 * j])
  local v = after[f]
  if v == nil then v = current(f) end
  if v == nil then return {3, f} end
  if (kind == 'floor' and v < bound) or (kind == 'ceiling' and v > bound) then
    return {1, j, stored[f][1]}
  end
end
local out = {2}
for i = 0, n - 1 do
  out[#out + 1] = redis.call(ARGV[3 + 3 * i], key, ARGV[2 + 3 * i], ARGV[4 + 3 * i])
end
return out
