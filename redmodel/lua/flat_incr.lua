if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return false end
return redis.call(ARGV[1], KEYS[2], ARGV[2])
