--! include flat_lib
local m = redis.call('GET', KEYS[1])
if not m then return 0 end
for _, k in ipairs(leaves(m, KEYS[1] .. ARGV[1])) do redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return 1
