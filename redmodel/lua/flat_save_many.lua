--! include flat_lib
-- The saves of many flat objects in one call (save_many's chunk), each as flat_save.lua
-- does it: all of an object's writes or none of them.
-- KEYS: per object, its manifest, its new leaves (one per value), then any other key it
-- declares (leaves it may have had). ARGV: the number of objects, then per object: the
-- position in KEYS of its manifest and of its last key, its number of leaves n, its ttl
-- ('' keeps the object's expiry | ms), the delimiter, the new manifest, the n values.
-- Answers one reply per object: 1 (saved), {'KEYS', missing...} (its old manifest names
-- leaves it did not declare), {'WRONGTYPE', key, type, 'string'} (its key holds another
-- type), or {'LATER'} for every object after one that was not saved (sent again after
-- it, so that two saves of one object land in their order). Nothing is written for an
-- object whose reply is not 1.
local out = {}
local p = 2
local blocked = false
for o = 1, tonumber(ARGV[1]) do
  local at, last, n = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
  local ttl, delim, v = ARGV[p + 3], ARGV[p + 4], p + 5
  p = v + n + 1
  if blocked then
    out[o] = {'LATER'}
  else
    local key = KEYS[at]
    local old, wrong = manifest_at(key)
    if wrong then
      out[o] = wrong
      blocked = true
    else
      local stale = {}
      if old and old ~= ARGV[v] then
        stale = stale_leaves(old, key .. delim, n, at, last)
      end
      if stale[1] == 'KEYS' then
        out[o] = stale
        blocked = true
      else
        local keep = -1
        if old and ttl == '' then keep = redis.call('PTTL', key) end
        for _, k in ipairs(stale) do redis.call('DEL', k) end
        set_leaves(at, n, v)
        local ms = tonumber(ttl)
        if not ms and keep > 0 then ms = keep end
        if ms then
          for i = at, at + n do redis.call('PEXPIRE', KEYS[i], ms) end
        end
        out[o] = 1
      end
    end
  end
end
return out
