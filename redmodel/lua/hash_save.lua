local ndel = tonumber(ARGV[2])
if #ARGV > 2 + ndel then redis.call('HSET', KEYS[1], unpack(ARGV, 3 + ndel)) end
if ndel > 0 then redis.call('HDEL', KEYS[1], unpack(ARGV, 3, 2 + ndel)) end
if ARGV[1] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
