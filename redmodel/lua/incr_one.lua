-- incr of one int field of an unindexed hash (Store.incr), the common case in one short
-- script: HINCRBY if the object exists, answered with the new value's exact text (HGET:
-- HINCRBY's integer reply would pass through a Lua double, exact only to 2**53).
-- KEYS: the object. ARGV: the stored field name, the amount (canonical 64-bit int text).
-- Replies: the new value's text; or 0, with nothing written, when the object is missing,
-- is not a hash, its stored value is not a canonical 64-bit int or the sum would leave 64
-- bits (HINCRBY refuses exactly what incr_fields.lua's int_parse refuses): the caller then
-- sends incr_fields.lua, which decides those cases and says why.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local r = redis.pcall('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and r.err then return 0 end
return redis.call('HGET', KEYS[1], ARGV[1])
