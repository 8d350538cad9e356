--! include flat_lib
local m = redis.call('GET', KEYS[1])
if not m then return false end
local keys = leaves(m, KEYS[1] .. ARGV[1])
local out = {m}
for i = 1, #keys, 500 do
  local part = redis.call('MGET', unpack(keys, i, math.min(i + 499, #keys)))
  for j = 1, #part do out[#out + 1] = part[j] end
end
return out
