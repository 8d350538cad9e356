--! include counter_lib
-- KEYS: the object's manifest, the leaf. ARGV: INCRBY | INCRBYFLOAT, amount.
-- Answers false when the object or the leaf is missing, else like incr_fields.lua:
-- {'WRONGTYPE', ...}, {'NOTNUM', leaf}, {'LIMIT', 1, kind, side, stored}, {'OK', new text}.
for _, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  if t == 'none' then return false end
  if t ~= 'string' then return {'WRONGTYPE', k, t, 'string'} end
end
local raw = redis.call('GET', KEYS[2])
if ARGV[1] == 'INCRBY' then
  local v, a = int_parse(raw), int_parse(ARGV[2])
  if v == nil then return {'NOTNUM', KEYS[2]} end
  if a == nil then return {'BADARG', 'amount'} end
  local n = int_add(v, a)
  if not in_int64(n) then
    return {'LIMIT', 1, 'int64', int_cmp(n, INT64_MAX) > 0 and 'ceiling' or 'floor', raw}
  end
  redis.call('INCRBY', KEYS[2], ARGV[2])
  return {'OK', int_text(n)}
end
local v, a = float_parse(raw), float_parse(ARGV[2])
if v == nil then return {'NOTNUM', KEYS[2]} end
if a == nil then return {'BADARG', 'amount'} end
if not finite(v + a) then
  return {'LIMIT', 1, 'double', v + a > 0 and 'ceiling' or 'floor', raw}
end
return {'OK', redis.call('INCRBYFLOAT', KEYS[2], ARGV[2])}
