--! include clock
--! include acl_lib
-- The lease and the records of one migration set (redmodel/_migrate.py), in one hash.
-- KEYS[1]: the set's hash (<name>:%migrations).
-- ARGV: token, mode, lease_ms, n, then n (field, value) pairs to HSET, then fields to HDEL.
--   mode 'take': take the lease unless another holder's has not expired;
--   mode 'hold': renew it (and write), only while this token holds it;
--   mode 'drop': write and release it, only while this token holds it.
-- Answers {'OK'}, or {'HELD', holder, ms left} (someone else holds it) or {'LOST', holder}
-- (this token no longer holds it), having written nothing.
local now = time_ms()
local token, mode, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lease = redis.call('HGET', KEYS[1], 'lease')
if lease then
  local holder, expires = string.match(lease, '^(%S+) (%d+)$')
  expires = tonumber(expires) or 0
  if holder ~= token then
    if expires > now then
      if mode == 'take' then
        return {'HELD', holder, tostring(expires - now)}
      end
      return {'LOST', holder}
    end
    if mode ~= 'take' then
      return {'LOST', ''}
    end
  end
elseif mode ~= 'take' then
  return {'LOST', ''}
end
local n = tonumber(ARGV[4])
-- HSET and HDEL: each allowed before the first write (acl_lib)
acl('hset', KEYS[1])
acl('hdel', KEYS[1])
acl_ok()
for i = 5, 4 + 2 * n, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
for i = 5 + 2 * n, #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
end
if mode == 'drop' then
  redis.call('HDEL', KEYS[1], 'lease')
else
  redis.call('HSET', KEYS[1], 'lease', token .. ' ' .. string.format('%.0f', now + ms))
end
return {'OK'}
