--! include flat_lib
local m = redis.call('GET', KEYS[1])
if not m then return 0 end
local done
if ARGV[2] == 'persist' then
  done = redis.call('PERSIST', KEYS[1])
else
  done = redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
for _, k in ipairs(leaves(m, KEYS[1] .. ARGV[1])) do
  if ARGV[2] == 'persist' then redis.call('PERSIST', k) else redis.call('PEXPIRE', k, ARGV[2]) end
end
return done
