--! include parts_lib
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local nset = tonumber(ARGV[1])
local keep = ARGV[2] == '1'
if keep then redis.call('HSET', KEYS[1], ARGV[3], '') end
if nset > 0 then call_parts('HSET', KEYS[1], ARGV, 4, 3 + 2 * nset) end
if #ARGV > 3 + 2 * nset then call_parts('HDEL', KEYS[1], ARGV, 4 + 2 * nset) end
if keep and redis.call('HLEN', KEYS[1]) > 1 then redis.call('HDEL', KEYS[1], ARGV[3]) end
return 1
