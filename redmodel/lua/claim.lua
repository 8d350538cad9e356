--! include clock
local now = time_ms()
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local owner, at = string.match(cur, '^(.*)\31([%dC]+)$')
  if owner == ARGV[2] then return 2 end
  local age = -1
  if at ~= 'C' then age = now - tonumber(at) end
  local stale = owner == ARGV[4] and (age < 0 or age >= tonumber(ARGV[3]))
  if not stale then return {'TAKEN', owner, age} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. now)
return 1
