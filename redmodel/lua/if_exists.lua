-- A plain write (HSET, SET ... KEEPTTL, PEXPIRE, ...) sent again after its first copy's
-- reply was lost, applied only if the object (its first key) still exists: a copy that
-- finds it gone (expired or deleted after the first copy may have run) writes nothing and
-- answers the GONE error, which the client turns into OutcomeUnknownError
-- (redmodel._transport._wire.guard, docs/failures.md).
-- KEYS: the command's keys. ARGV: (guard_head's count, type and objects), the client's protocol
-- ('2' or '3'), the command's name, then its other arguments.
--! include guard_head
if ARGV[1] == '3' then redis.setresp(3) end
local args = {}
for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
return redis.call(ARGV[2], unpack(args))
