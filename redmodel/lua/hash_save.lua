--! include parts_lib
local ndel = tonumber(ARGV[2])
local sets, dels, ttl = #ARGV > 2 + ndel, ndel > 0, ARGV[1] ~= ''
-- the commands after the first write (the HSET, else the HDEL) are allowed before it runs:
-- Redis checks the ACL at each command of a script and never rolls back (acl_lib.lua
-- says it at length; asked inline here, the hottest script: no function made per call)
local refused = (sets and dels and not redis.acl_check_cmd('hdel', KEYS[1])) and 'hdel'
  or ((sets or dels) and ttl and not redis.acl_check_cmd('pexpire', KEYS[1])) and 'pexpire'
if refused then
  return redis.error_reply('NOPERM this user has no permissions to run the \'' .. refused ..
    '\' command on the key \'' .. KEYS[1] .. '\', which this write needs after its first ' ..
    'change: nothing was written')
end
if sets then call_parts('HSET', KEYS[1], ARGV, 3 + ndel) end
if dels then call_parts('HDEL', KEYS[1], ARGV, 3, 2 + ndel) end
if ttl then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
