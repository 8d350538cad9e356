-- The arguments a wrapped script sees: t[n + 1 ..], after those its wrapper took (included
-- by once_head, memo_head and guard_head).
local function shift_args(t, n)
  local out = {}
  for i = n + 1, #t do out[#out + 1] = t[i] end
  return out
end
