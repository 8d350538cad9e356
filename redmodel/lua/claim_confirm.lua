local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'WRONGTYPE', KEYS[1], kind, 'hash'} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.match(cur, '^(.*)\31[%dC]+$') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31C')
  return 1
end
return 0
