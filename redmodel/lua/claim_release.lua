local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.match(cur, '^(.*)\31[%dC]+$') == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
