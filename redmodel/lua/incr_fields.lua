--! include parts_lib
--! include counter_lib
-- KEYS: the object (a hash). ARGV: the counters (see read_counters).
-- Replies: {'MISSING'}; {'WRONGTYPE', key, type, 'hash'}; {'NOTNUM', field};
-- {'LIMIT', change, 'int64' | 'exact' | 'double', side, stored}; {'BOUND', bound, stored};
-- {'BADARG', what}; {'OK', new value text...}. Nothing is written unless 'OK'.
local obj = KEYS[1]
local changes, bounds = read_counters(1)
if changes == nil then return {'BADARG', 'counters'} end
if redis.call('EXISTS', obj) == 0 then return {'MISSING'} end
local after, refusal = plan_counters(obj, changes, bounds)
if after == nil then return refusal end
local out = apply_counters(obj, changes, after)
return list_of({'OK'}, out)
