-- KEYS: the claim hash. ARGV: value, id, the claim's text before this id refreshed it.
-- Undoes a refresh (a claim of a value the id already held, whose write did not happen):
-- the claim gets its earlier text back if it is still this id's, unconfirmed.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'WRONGTYPE', KEYS[1], kind, 'hash'} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local owner, at = string.match(cur, '^(.*)\31([%dC]+)$')
  if owner == ARGV[2] and at ~= 'C' then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    return 1
  end
end
return 0
