--! include clock
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'WRONGTYPE', KEYS[1], kind, 'hash'} end
local now = time_ms()
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local owner, at = string.match(cur, '^(.*)\31([%dC]+)$')
  if owner == ARGV[2] then
    -- ours already: fresh again until this write lands, so that a repair or a takeover
    -- that read the claim before cannot drop it meanwhile (they compare its whole text)
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. now)
    return {'OURS', cur}
  end
  local age = -1
  if at ~= 'C' then age = now - tonumber(at) end
  local stale = owner == ARGV[4] and (age < 0 or age >= tonumber(ARGV[3]))
  if not stale then return {'TAKEN', owner, age} end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\31' .. now)
return 1
