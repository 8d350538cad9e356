--! include parts_lib
local ndel = tonumber(ARGV[2])
if #ARGV > 2 + ndel then call_parts('HSET', KEYS[1], ARGV, 3 + ndel) end
if ndel > 0 then call_parts('HDEL', KEYS[1], ARGV, 3, 2 + ndel) end
if ARGV[1] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
