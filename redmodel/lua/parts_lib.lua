-- Lua passes at most about 8,000 values to one call (unpack's C stack limit), so a list
-- whose length is not bounded by the code (entries, keys, fields) is never unpacked
-- whole: commands over it are sent in parts, replies are built by loops.
local PART = 1000  -- even: HSET pairs never straddle two parts
-- cmd key t[i..j], in parts of at most PART values (one atomic script still); the sum of
-- the parts' integer replies (HSET: fields added, HDEL: fields removed)
local function call_parts(cmd, key, t, i, j)
  i = i or 1
  j = j or #t
  local sum = 0
  while i <= j do
    local k = math.min(i + PART - 1, j)
    local r = redis.call(cmd, key, unpack(t, i, k))
    if type(r) == 'number' then sum = sum + r end
    i = k + 1
  end
  return sum
end
-- {head..., t...} as a new list, without unpack
local function list_of(head, t)
  local out = {}
  for k = 1, #head do out[k] = head[k] end
  for k = 1, #t do out[#out + 1] = t[k] end
  return out
end
