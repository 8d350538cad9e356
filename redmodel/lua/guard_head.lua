-- Conditional resend, first part (composed before a script by redmodel/_plan.py
-- guard_variant, and included by if_exists.lua): ARGV[1] is a count n, ARGV[2] the type
-- the objects hold when the write may go on ('hash' | 'string', '' for any), and
-- ARGV[3..n+2] the objects the write needs (keys among its own KEYS). One missing, or
-- holding another type (the first copy may have run, the object expired and another
-- client wrote another type there: attack 32I), nothing is written and the GONE error
-- answers (docs/failures.md, "Resent writes and missing objects"). The type is probed by
-- the read the models' ACL rules grant (HGET, GET), not TYPE.
-- The write then sees the rest of ARGV as its ARGV.
local guard_n, guard_t = tonumber(ARGV[1]), ARGV[2]
for guard_i = 3, guard_n + 2 do
  local key = ARGV[guard_i]
  if redis.call('EXISTS', key) == 0 then
    return redis.error_reply('GONE ' .. key .. ' is missing at the resend of a ' ..
      'write whose first copy may have run: nothing written by this copy')
  end
  if guard_t ~= '' then
    local probe
    if guard_t == 'hash' then probe = redis.pcall('HGET', key, '')
    else probe = redis.pcall('GET', key) end
    if type(probe) == 'table' and probe.err and string.find(probe.err, 'WRONGTYPE', 1, true) then
      return redis.error_reply('GONE ' .. key .. ' holds another type than a ' .. guard_t ..
        ' at the resend of a write whose first copy may have run: nothing written by this copy')
    end
  end
end
--! include shift_lib
local ARGV = shift_args(ARGV, guard_n + 2)
