-- incr of one int field of an unindexed hash (Store.incr), the common case in one short
-- script: HINCRBY if the object exists, answered with the new value exactly: HINCRBY's
-- integer reply reaches Lua as a double, exact only below 2**53 in magnitude, so a value
-- there is answered as that number (an integer reply) and any other by its text (HGET).
-- KEYS: the object. ARGV: the stored field name, the amount (canonical 64-bit int text).
-- Replies: the new value (an integer, or its text); or nil, with nothing written, when the
-- object is missing, is not a hash, its stored value is not a canonical 64-bit int or the
-- sum would leave 64 bits (HINCRBY refuses exactly what incr_fields.lua's int_parse
-- refuses): the caller then sends incr_fields.lua, which decides those cases and says why.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
-- the HGET after the write is allowed before it runs (acl_lib.lua says why; asked inline)
if not redis.acl_check_cmd('hget', KEYS[1]) then
  return redis.error_reply('NOPERM this user has no permissions to run the \'hget\' command ' ..
    'on the key \'' .. KEYS[1] .. '\', which this write needs after its first change: ' ..
    'nothing was written')
end
local r = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and r.err then return false end
-- strict bounds: a sum of 2**53 or more in magnitude rounds to a double at least as large
if r > -9007199254740992 and r < 9007199254740992 then return r end
return redis.call('HGET', KEYS[1], ARGV[1])
