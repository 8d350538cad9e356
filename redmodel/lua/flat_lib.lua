-- The manifest at `key` (false when there is none), or nil and the reply
-- {'WRONGTYPE', key, type, 'string'} to give when the key holds another type (nothing
-- written: the client raises a ServerError naming it, never the script's error text)
-- (the key's type by TYPE, which the flat layout's ACL rule need not grant: this error
-- path alone asks it, and a refusal of it says "a value of another type"; a GET refused for
-- another reason than the type, an ACL, is raised as it is)
local function type_of(key)
  local t = redis.pcall('TYPE', key)
  return type(t) == 'table' and t.ok or 'value of another type'
end
local function manifest_at(key)
  local m = redis.pcall('GET', key)
  if type(m) == 'table' and m.err then
    if string.sub(m.err, 1, 9) ~= 'WRONGTYPE' then error(m) end
    return nil, {'WRONGTYPE', key, type_of(key), 'string'}
  end
  return m
end
-- the leaf keys a flat object's manifest names (lines after the skeleton)
local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end
-- Every key a script touches is in KEYS: nil when each of `keys` is declared, else the
-- reply {'KEYS', missing...} to give instead of touching anything (the client sends the
-- call again with them; redmodel/_flat.py)
local function undeclared(keys, declared)
  if not declared then
    declared = {}
    for _, k in ipairs(KEYS) do declared[k] = true end
  end
  local out = {'KEYS'}
  for _, k in ipairs(keys) do
    if not declared[k] then out[#out + 1] = k end
  end
  if #out > 1 then return out end
  return nil
end
-- The leaves the old manifest names that the save of the n new leaves at KEYS[at + 1 ..
-- at + n] does not write: to delete. Or {'KEYS', missing...} when one is not declared
-- (the keys of this object's call are KEYS[at .. last], default the whole KEYS).
local function stale_leaves(old, base, n, at, last)
  at = at or 1
  local new = {}
  for i = at + 1, at + n do new[KEYS[i]] = true end
  local stale = {}
  for _, k in ipairs(leaves(old, base)) do
    if not new[k] then stale[#stale + 1] = k end
  end
  local declared
  if last then
    declared = {}
    for i = at, last do declared[KEYS[i]] = true end
  end
  return undeclared(stale, declared) or stale
end
-- MSET of the manifest KEYS[at] = ARGV[v] and the n leaves after it (values after it),
-- in slices of 500 pairs
local function set_leaves(at, n, v)
  local args = {KEYS[at], ARGV[v]}
  for i = 1, n do
    args[#args + 1] = KEYS[at + i]
    args[#args + 1] = ARGV[v + i]
    if #args >= 1000 then redis.call('MSET', unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('MSET', unpack(args)) end
end
