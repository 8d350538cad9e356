-- Exact counters for incr / incr_fields. Lua numbers are doubles, exact only up to 2**53,
-- so an int is kept as two limbs: value = hi * 1e9 + lo, |lo| < 1e9, hi and lo never of
-- opposite signs. Every check (the stored text is a number, no 64-bit overflow, the exact
-- window of a range index, floor and ceiling) runs before the first write.
local BASE = 1000000000
local function int_norm(hi, lo)
  if lo >= BASE then hi = hi + 1; lo = lo - BASE
  elseif lo <= -BASE then hi = hi - 1; lo = lo + BASE end
  if hi > 0 and lo < 0 then hi = hi - 1; lo = lo + BASE
  elseif hi < 0 and lo > 0 then hi = hi + 1; lo = lo - BASE end
  return {hi, lo}
end
local function int_cmp(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] and -1 or 1 end
  if a[2] ~= b[2] then return a[2] < b[2] and -1 or 1 end
  return 0
end
local INT64_MAX = {9223372036, 854775807}
local INT64_MIN = {-9223372036, -854775808}
-- canonical decimal text of a 64-bit int (what Redis' HINCRBY accepts) -> limbs, or nil;
-- with `wide`, any 19 digits (a bound)
local function int_parse(s, wide)
  if s == '0' then return {0, 0} end
  local neg, digits = string.match(s, '^(%-?)([1-9]%d*)$')
  if not digits or #digits > 19 then return nil end
  local hi, lo = 0, tonumber(digits)
  if #digits > 9 then
    hi = tonumber(string.sub(digits, 1, -10))
    lo = tonumber(string.sub(digits, -9))
  end
  local v = {hi, lo}
  if neg == '-' then v = {-hi, -lo} end
  if not wide and (int_cmp(v, INT64_MIN) < 0 or int_cmp(v, INT64_MAX) > 0) then return nil end
  return v
end
local function int_add(a, b) return int_norm(a[1] + b[1], a[2] + b[2]) end
local function int_text(a)
  if a[1] == 0 then return string.format('%d', a[2]) end
  local sign = (a[1] < 0) and '-' or ''
  return string.format('%s%d%09d', sign, math.abs(a[1]), math.abs(a[2]))
end
local EXACT_MAX = {9007199, 254740992}  -- 2**53: a range index holds ints exactly up to here
local EXACT_MIN = {-9007199, -254740992}
local function in_int64(a) return int_cmp(a, INT64_MIN) >= 0 and int_cmp(a, INT64_MAX) <= 0 end

-- a stored float as HINCRBYFLOAT would accept it, as a finite double; or nil. No
-- leading '+': a text a read refuses (strict decoding: "not a number's decimal text")
-- is no number to add to either (an upgrade= field would otherwise lose its upgrade)
local function float_parse(s)
  if string.byte(s, 1) == 43 then return nil end  -- '+'
  if not string.find(s, '^[-+]?%d*%.?%d*[eE]?[-+]?%d*$') then return nil end
  local v = tonumber(s)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return nil end
  if v == 0 and string.find(string.match(s, '^[^eE]*'), '[1-9]') then return nil end
  return v
end
local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

-- Python's repr of a finite double, which is what a save writes (repr(float)): the
-- shortest digits that read back as the same double (the nearest such text when several
-- have that length), in fixed notation for exponents -4..15, else as d.ddde+XX.
local function float_sci(s)  -- '%.Ne' text -> sign, digits, decimal exponent
  local sign, a, b, e = string.match(s, '^(%-?)(%d)%.?(%d*)e([-+]%d+)$')
  return sign, a .. b, tonumber(e)
end
local function float_repr(v)
  if v == 0 then return (1 / v < 0) and '-0.0' or '0.0' end
  local sign, digits, e
  for p = 1, 17 do
    local s = string.format('%.' .. (p - 1) .. 'e', v)
    if tonumber(s) == v then sign, digits, e = float_sci(s); break end
    -- just above a power of two the interval below a double is half the one above it:
    -- the p digits one unit up (in magnitude) may read back when the nearest do not
    local sg, d, ex = float_sci(s)
    local t, i = {}, #d
    for c in string.gmatch(d, '%d') do t[#t + 1] = tonumber(c) end
    while i >= 1 and t[i] == 9 do t[i] = 0; i = i - 1 end
    local up
    if i == 0 then up = '1' .. string.sub(table.concat(t), 1, p - 1); ex = ex + 1
    else t[i] = t[i] + 1; up = table.concat(t) end
    local text = sg .. string.sub(up, 1, 1) .. '.' .. string.sub(up, 2) .. 'e' .. ex
    if tonumber(text) == v then sign, digits, e = sg, up, ex; break end
  end
  digits = string.gsub(digits, '0+$', '')
  if digits == '' then digits = '0' end
  local n = #digits
  if e < -4 or e >= 16 then
    local rest = string.sub(digits, 2)
    if rest ~= '' then rest = '.' .. rest end
    local es = (e < 0) and '-' or '+'
    return string.format('%s%s%se%s%02d', sign, string.sub(digits, 1, 1), rest, es, math.abs(e))
  end
  if e < 0 then return sign .. '0.' .. string.rep('0', -e - 1) .. digits end
  if n <= e + 1 then return sign .. digits .. string.rep('0', e + 1 - n) .. '.0' end
  return sign .. string.sub(digits, 1, e + 1) .. '.' .. string.sub(digits, e + 2)
end
-- changes: list of {field, 'i'|'f', amount text, window (1: range-indexed int)}
-- bounds: list of {field, 'floor'|'ceiling', bound text}
-- Returns (nil, reply) to refuse, or (after, stored): after[i] is the new value of
-- change i (limbs for an int, a double for a float), stored[field] the stored text
-- (false when the field is absent, which counts as its default: the text sent after the
-- kind, 'i:5', what a read of the model gives a field stored nowhere; else 0).
-- A field renamed with old_names comes as 'name\nold1\nold2': when the current name holds
-- nothing, the value under the first old name holding one is used, and apply_counters
-- moves it to the current name (counter_moved[name] = that old name), as a save does.
local counter_moved = {}
local counter_set = {}  -- fields whose stored int is written whole (not by HINCRBY)
local function plan_counters(obj, changes, bounds)
  local stored, kind_of, value = {}, {}, {}
  local olds, dflt, beyond = {}, {}, {}
  for _, c in ipairs(changes) do olds[c[1]] = c[5]; dflt[c[1]] = c[6] end
  for _, b in ipairs(bounds) do
    olds[b[1]] = olds[b[1]] or b[5]
    dflt[b[1]] = dflt[b[1]] or b[6]
  end
  local function current(f, kind)
    if value[f] == nil then
      local raw = redis.pcall('HGET', obj, f)  -- a read: failing here writes nothing
      if type(raw) == 'table' and raw.err then
        -- not its type (an ACL: NOPERM): raised as it is. TYPE only names the type, on
        -- this error path alone: the hash models ACL rule lacks it ("a value of another type")
        if string.sub(raw.err, 1, 9) ~= 'WRONGTYPE' then error(raw) end
        local t = redis.pcall('TYPE', obj)
        t = type(t) == 'table' and t.ok or 'value of another type'
        if t == 'hash' or t == 'none' then error(raw) end
        return nil, {'WRONGTYPE', obj, t, 'hash'}
      end
      if not raw and olds[f] then
        for _, o in ipairs(olds[f]) do
          local r = redis.call('HGET', obj, o)
          if r then raw = r; counter_moved[f] = o; break end
        end
      end
      stored[f] = raw
      -- absent: its default, written whole (HINCRBY would count from 0)
      if not raw and dflt[f] then counter_set[f] = true end
      local v
      local text = raw or dflt[f] or '0'
      if kind == 'i' then v = int_parse(text) else v = float_parse(text) end
      if v == nil and not raw and dflt[f] then
        -- a default no counter holds (an int beyond 64 bits, a float inf or nan): what a
        -- read gives the field, so never counted from 0; an increment refuses it
        beyond[f] = true
        kind_of[f] = kind
        return nil
      end
      if v == nil then return nil end
      value[f] = v
      kind_of[f] = kind
    end
    return value[f]
  end
  local after = {}
  for i, c in ipairs(changes) do
    local f, kind, amount = c[1], c[2], c[3]
    local v, wrong = current(f, kind)
    if wrong then return nil, wrong end
    if beyond[f] then
      -- refused whatever the amount, as a sum outside 64 bits / not finite is
      local d = dflt[f]
      local side = string.sub(d, 1, 1) == '-' and 'floor' or 'ceiling'
      return nil, {'LIMIT', i, kind == 'i' and 'int64' or 'double', side, d}
    end
    local s = stored[f]
    if v == nil and kind == 'i' and s and string.match(s, '^%-?[1-9]%d*$') then
      -- an int beyond 64 bits (a save stores any int as its text): HINCRBY cannot add
      -- to it; the result is within 64 bits only from 19 digits, then written whole
      local wide = int_parse(s, true)
      local a = int_parse(amount)
      local n = wide and a and int_add(wide, a)
      if not (n and in_int64(n)) then
        local side = string.sub(s, 1, 1) == '-' and 'floor' or 'ceiling'
        return nil, {'LIMIT', i, 'int64', side, s}
      end
      v = wide
      counter_set[f] = true
    end
    if v == nil then return nil, {'NOTNUM', f} end
    if kind == 'i' then
      local a = int_parse(amount)
      if a == nil then return nil, {'BADARG', 'amount ' .. amount} end
      local n = int_add(v, a)
      if not in_int64(n) then
        local side = int_cmp(n, INT64_MAX) > 0 and 'ceiling' or 'floor'
        return nil, {'LIMIT', i, 'int64', side, (stored[f] or dflt[f] or '0')}
      end
      if c[4] == '1' and (int_cmp(n, EXACT_MAX) > 0 or int_cmp(n, EXACT_MIN) < 0) then
        local side = int_cmp(n, EXACT_MAX) > 0 and 'ceiling' or 'floor'
        return nil, {'LIMIT', i, 'exact', side, (stored[f] or dflt[f] or '0')}
      end
      after[i] = n
      value[f] = n
    else
      local a = float_parse(amount)
      if a == nil then return nil, {'BADARG', 'amount ' .. amount} end
      local n = v + a
      if not finite(n) then
        return nil, {'LIMIT', i, 'double', n > 0 and 'ceiling' or 'floor', (stored[f] or dflt[f] or '0')}
      end
      after[i] = n
      value[f] = n
    end
  end
  for j, b in ipairs(bounds) do
    local f, side, text, kind = b[1], b[2], b[3], b[4]
    local v, wrong = current(f, kind)
    if wrong then return nil, wrong end
    local below, above
    if beyond[f] then
      -- a default beyond every counter: an int of 20+ digits is beyond every bound (they
      -- are kept within 19), one of 19 is compared exactly; a float inf compares as a
      -- double; nan is neither above a floor nor below a ceiling: refused on both sides
      local d = dflt[f]
      if kind == 'i' then v = int_parse(d, true)
      else v = (d == 'inf' and math.huge) or (d == '-inf' and -math.huge) or nil end
      if v == nil and kind == 'i' then
        below, above = string.sub(d, 1, 1) == '-', string.sub(d, 1, 1) ~= '-'
      elseif v == nil then
        below, above = true, true
      end
    end
    if v == nil and below == nil then return nil, {'NOTNUM', f} end
    if below ~= nil then
      -- (decided above)
    elseif kind == 'i' then
      local bound = int_parse(text, true)
      if bound == nil then return nil, {'BADARG', 'bound ' .. text} end
      below, above = int_cmp(v, bound) < 0, int_cmp(v, bound) > 0
    else
      local bound = float_parse(text)
      if bound == nil then return nil, {'BADARG', 'bound ' .. text} end
      below, above = v < bound, v > bound
    end
    if (side == 'floor' and below) or (side == 'ceiling' and above) then
      return nil, {'BOUND', j, (stored[f] or dflt[f] or '0')}
    end
  end
  return after, stored
end
-- Apply checked changes; returns the new value of each as exact text: an int's from the
-- limbs (HINCRBY's integer reply passes through a Lua double), a float's as the shortest
-- text of the double sum (what a save of that value writes).
local function apply_counters(obj, changes, after)
  local out = {}
  for i, c in ipairs(changes) do
    local moved = counter_moved[c[1]]
    if c[2] == 'i' then
      out[i] = int_text(after[i])
      if moved or counter_set[c[1]] then redis.call('HSET', obj, c[1], out[i])
      else redis.call('HINCRBY', obj, c[1], c[3]) end
    else
      -- the sum in double (as Python adds), stored as its shortest text like a save:
      -- HINCRBYFLOAT would add in long double and keep digits no double has
      out[i] = float_repr(after[i])
      redis.call('HSET', obj, c[1], out[i])
    end
    if moved then redis.call('HDEL', obj, moved) end
  end
  return out
end
-- ARGV from position p: n, n x (field, kind, amount, window), m, m x (field, side, bound,
-- kind). Returns changes, bounds and the position after them; nil on malformed input.
local function read_counters(p)
  local n = tonumber(ARGV[p])
  if n == nil then return nil end
  local changes, bounds = {}, {}
  for i = 1, n do
    local at = p + 1 + 4 * (i - 1)
    changes[i] = {ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]}
  end
  p = p + 1 + 4 * n
  local m = tonumber(ARGV[p])
  if m == nil then return nil end
  for j = 1, m do
    local at = p + 1 + 4 * (j - 1)
    bounds[j] = {ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]}
  end
  local function names(t)
    local parts = {}
    for part in string.gmatch(t[1], '[^\n]+') do parts[#parts + 1] = part end
    if #parts > 1 then t[1] = parts[1]; t[5] = {unpack(parts, 2)} end
  end
  -- a kind 'i' | 'f', then ':' and the field's default text when it has one (t[6])
  local function kind(t, at)
    local k, d = string.match(t[at] or '', '^([if]):(.+)$')
    if k then t[at] = k; t[6] = d end
    return t[at] == 'i' or t[at] == 'f'
  end
  for _, c in ipairs(changes) do
    if c[3] == nil or not kind(c, 2) then return nil end
    names(c)
  end
  for _, b in ipairs(bounds) do
    if b[4] == nil or (b[2] ~= 'floor' and b[2] ~= 'ceiling') or not kind(b, 4) then
      return nil
    end
    names(b)
  end
  return changes, bounds, p + 1 + 4 * m
end
