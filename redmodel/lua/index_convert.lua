--! include index_lib
-- Converts a bucket's all-ids index from the format of older redmodel versions (a SET) to
-- the current one (a ZSET, every score 0), a bounded step at a time so no call walks the
-- whole set. KEYS: all, a spare key for the old set. ARGV: how many ids per step.
-- Answers how many ids are left to move (0: done).
local all, old = KEYS[1], KEYS[2]
local n = tonumber(ARGV[1])
if n == nil or n < 1 then return {'BADARG', 'count'} end
local refusal = check_keys({[old] = 'set'})
if refusal then return refusal end
local t = redis.call('TYPE', all)['ok']
if t == 'set' then
  if redis.call('EXISTS', old) == 1 then
    -- an earlier step was interrupted right after a rename: merge, then go on
    for _, id in ipairs(redis.call('SPOP', all, n)) do redis.call('SADD', old, id) end
    if redis.call('EXISTS', all) == 1 then return redis.call('SCARD', all) end
  else
    redis.call('RENAME', all, old)
  end
elseif t ~= 'none' and t ~= 'zset' then
  return {'WRONGTYPE', all, t, 'zset'}
end
for _, id in ipairs(redis.call('SPOP', old, n)) do redis.call('ZADD', all, 0, id) end
return redis.call('SCARD', old)
