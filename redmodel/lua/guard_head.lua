-- Conditional resend, first part (composed before a script by redmodel/_plan.py
-- guard_variant, and included by if_exists.lua): ARGV[1] is a count n and ARGV[2..n+1]
-- the objects the write needs (keys among its own KEYS); one missing, nothing is written
-- and the GONE error answers (docs/failures.md, "Resent writes and missing objects").
-- The write then sees the rest of ARGV as its ARGV.
local guard_n = tonumber(ARGV[1])
for guard_i = 2, guard_n + 1 do
  if redis.call('EXISTS', ARGV[guard_i]) == 0 then
    return redis.error_reply('GONE ' .. ARGV[guard_i] .. ' is missing at the resend of a ' ..
      'write whose first copy may have run: nothing written by this copy')
  end
end
local function guard_shift(t, n)
  local out = {}
  for i = n + 1, #t do out[#out + 1] = t[i] end
  return out
end
local ARGV = guard_shift(ARGV, guard_n + 1)
