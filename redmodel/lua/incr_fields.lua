--! include parts_lib
--! include counter_lib
--! include acl_lib
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
-- apply_counters' commands (HINCRBY, HSET, HDEL of a moved value): more than one kind,
-- each allowed before the first runs (acl_lib)
local cmds, kinds = {}, 0
for _, c in ipairs(changes) do
  local moved = counter_moved[c[1]]
  local cmd = (c[2] == 'i' and not (moved or counter_set[c[1]])) and 'hincrby' or 'hset'
  if not cmds[cmd] then cmds[cmd] = true; kinds = kinds + 1 end
  if moved and not cmds.hdel then cmds.hdel = true; kinds = kinds + 1 end
end
if kinds > 1 then
  for cmd in pairs(cmds) do acl(cmd, obj) end
  acl_ok()
end
local out = apply_counters(obj, changes, after)
return list_of({'OK'}, out)
