-- Exactly-once wrapper, first half (composed around a write by redmodel/_plan.py; see
-- docs/failures.md). KEYS[1] is the write id's key and ARGV[1] its expiry in ms; the
-- wrapped write sees the remaining keys and arguments as its KEYS and ARGV. A write id
-- already recorded ('R' and its first reply) answers that reply again instead of applying
-- the write twice; a fenced one ('F': given up by its client) or a done one ('D': its
-- client has the reply, a copy may still be on its way) is never applied.
local once_key, once_ttl = KEYS[1], ARGV[1]
local once_seen = redis.call('GET', once_key)
if once_seen then
  if string.sub(once_seen, 1, 1) == 'R' then
    return cmsgpack.unpack(string.sub(once_seen, 2))
  end
  return redis.error_reply('FENCED write id ' .. once_key ..
    ' was given up or already answered: this copy is never applied')
end
-- once_tail's SET of the record comes after the write: allowed before the write runs,
-- else NOPERM with nothing written (the ACL checks each command a script calls, and a
-- write is never rolled back)
if not redis.acl_check_cmd('set', once_key) then
  return redis.error_reply('NOPERM this user has no permissions to run the \'set\' command ' ..
    'on the key \'' .. once_key .. '\', which this write needs after its first change: ' ..
    'nothing was written')
end
--! include shift_lib
local KEYS, ARGV = shift_args(KEYS, 1), shift_args(ARGV, 1)
