local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end

local m = redis.call('GET', KEYS[1])
if not m then return 0 end
for _, k in ipairs(leaves(m, KEYS[1] .. ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return 1
