-- Conditional resend, first part (composed before a script by redmodel/_plan.py
-- guard_variant, and included by if_exists.lua): KEYS[1] is the object the write needs;
-- missing, nothing is written and the GONE error answers (docs/failures.md).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('GONE ' .. KEYS[1] .. ' is missing at the resend of a write ' ..
    'whose first copy may have run: nothing written by this copy')
end
