local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return false end
local data = redis.call('HGETALL', ARGV[2] .. id)
if #data == 0 then return false end
return {id, data}
