-- KEYS: a claim hash. ARGV: value, the claim's whole text as the caller read it.
-- Drops the claim only if it is still exactly that (a repair of a claim whose owner no
-- longer holds the value: a refreshed or confirmed claim has another text and stays).
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'WRONGTYPE', KEYS[1], kind, 'hash'} end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
