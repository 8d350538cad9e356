--! include ids_lib
-- Read-only: the all-ids pages of a bucket as repair sees them (verify and the records
-- pass of redmodel/_indexes/_repair.py), through ids_lib.lua (the one code that knows the
-- page keys).
-- KEYS: ids (the directory; root = ids without 'ids'), idn (the count).
-- ARGV: op, the delimiter, then
--   'has', id...: {'HAS', 1 or 0 per id}
--   'after', cursor ('' from the start), n: {'IDS', done (1 | 0), id...}: up to n ids
--     after the cursor, in id order (the cursor is the id: pages split or joined between
--     calls never make an id repeat or be skipped)
-- Refusals: {'WRONGTYPE', key, type, expected}, {'BADARG', what}.
local root = string.sub(KEYS[1], 1, -4)
local op, d = ARGV[1], ARGV[2]
if op == 'has' then
  local out = {'HAS'}
  for i = 3, #ARGV do
    local h, bad = ids_has(root, d, ARGV[i])
    if bad then return bad end
    out[#out + 1] = h and 1 or 0
  end
  return out
elseif op == 'after' then
  local n = tonumber(ARGV[4])
  if n == nil or n < 1 or n ~= math.floor(n) then return {'BADARG', 'count'} end
  local ids, ended, _, bad = ids_after(root, d, ARGV[3], n)
  if bad then return bad end
  local out = {'IDS', ended and 1 or 0}
  for _, id in ipairs(ids) do out[#out + 1] = id end
  return out
end
return {'BADARG', 'op'}
