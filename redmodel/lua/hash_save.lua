--! include parts_lib
--! include acl_lib
local ndel = tonumber(ARGV[2])
local sets, dels, ttl = #ARGV > 2 + ndel, ndel > 0, ARGV[1] ~= ''
if (sets and 1 or 0) + (dels and 1 or 0) + (ttl and 1 or 0) > 1 then
  -- more than one command: each is allowed before the first runs (acl_lib)
  if sets then acl('hset', KEYS[1]) end
  if dels then acl('hdel', KEYS[1]) end
  if ttl then acl('pexpire', KEYS[1]) end
  acl_ok()
end
if sets then call_parts('HSET', KEYS[1], ARGV, 3 + ndel) end
if dels then call_parts('HDEL', KEYS[1], ARGV, 3, 2 + ndel) end
if ttl then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
