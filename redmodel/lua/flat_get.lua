local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end

local m = redis.call('GET', KEYS[1])
if not m then return false end
local keys = leaves(m, KEYS[1] .. ARGV[1])
local out = {m}
for i = 1, #keys, 500 do
  local part = redis.call('MGET', unpack(keys, i, math.min(i + 499, #keys)))
  for j = 1, #part do out[#out + 1] = part[j] end
end
return out
