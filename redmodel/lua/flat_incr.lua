--! include counter_lib
-- KEYS: the object's manifest, the leaf. ARGV: INCRBY | INCRBYFLOAT, amount.
-- Answers false when the object or the leaf is missing, else like incr_fields.lua:
-- {'WRONGTYPE', ...}, {'NOTNUM', leaf}, {'LIMIT', 1, kind, side, stored}, {'OK', new text}.
-- GET is the check: missing, or of the wrong type (an error reply: nothing written yet)
-- KEYS[3..]: the leaf under the field's earlier names (old_names=): when the current leaf
-- is missing and one of those holds a value, {'RENAMED', that key} (nothing written)
local raw
for i = 1, 2 do
  local k = KEYS[i]
  raw = redis.pcall('GET', k)
  if type(raw) == 'table' and raw.err then
    -- (TYPE on this error path only, asked as flat_lib's type_of does: the rule may lack it)
    if string.sub(raw.err, 1, 9) ~= 'WRONGTYPE' then error(raw) end
    local t = redis.pcall('TYPE', k)
    return {'WRONGTYPE', k, type(t) == 'table' and t.ok or 'value of another type', 'string'}
  end
  if not raw then
    if i == 2 then
      for j = 3, #KEYS do
        if redis.call('EXISTS', KEYS[j]) == 1 then return {'RENAMED', KEYS[j]} end
      end
    end
    return false
  end
end
if ARGV[1] == 'INCRBY' then
  local v, a = int_parse(raw), int_parse(ARGV[2])
  local whole = false
  if v == nil and string.match(raw, '^%-?[1-9]%d*$') then
    -- an int beyond 64 bits: INCRBY cannot add to it (see counter_lib)
    local wide = int_parse(raw, true)
    local n = wide and a and int_add(wide, a)
    if not (n and in_int64(n)) then
      return {'LIMIT', 1, 'int64', string.sub(raw, 1, 1) == '-' and 'floor' or 'ceiling', raw}
    end
    v, whole = wide, true
  end
  if v == nil then return {'NOTNUM', KEYS[2]} end
  if a == nil then return {'BADARG', 'amount'} end
  local n = int_add(v, a)
  if not in_int64(n) then
    return {'LIMIT', 1, 'int64', int_cmp(n, INT64_MAX) > 0 and 'ceiling' or 'floor', raw}
  end
  if whole then redis.call('SET', KEYS[2], int_text(n), 'KEEPTTL')
  else redis.call('INCRBY', KEYS[2], ARGV[2]) end
  return {'OK', int_text(n)}
end
local v, a = float_parse(raw), float_parse(ARGV[2])
if v == nil then return {'NOTNUM', KEYS[2]} end
if a == nil then return {'BADARG', 'amount'} end
if not finite(v + a) then
  return {'LIMIT', 1, 'double', v + a > 0 and 'ceiling' or 'floor', raw}
end
-- the double sum stored as its shortest text (INCRBYFLOAT adds in long double)
local text = float_repr(v + a)
redis.call('SET', KEYS[2], text, 'KEEPTTL')
return {'OK', text}
