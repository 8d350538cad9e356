--! include clock
--! include parts_lib
-- Index helpers shared by the write, sweep and repair scripts (see redmodel/_index.py).
-- Every script here first checks, then writes: the keys it touches must all be in KEYS
-- (else it answers {'KEYS', missing...} and writes nothing), each must hold the type it
-- expects (else {'WRONGTYPE', key, type, expected}), and only then does it write.
local SEP = '\31'
local function split(line)
  return string.match(line, '^([^\31]*)\31([^\31]*)\31(.*)$')
end
local function lines(text)
  local t = {}
  if text then for line in string.gmatch(text, '[^\n]+') do t[line] = true end end
  return t
end
local DECLARED
local function declared_keys()
  if not DECLARED then
    DECLARED = {}
    for _, k in ipairs(KEYS) do DECLARED[k] = true end
  end
  return DECLARED
end
-- a score as the client sends it: a finite number in plain decimal text
local function valid_score(s)
  if type(s) ~= 'string' or not string.find(s, '^[-+]?%d*%.?%d*[eE]?[-+]?%d*$') then
    return false
  end
  local v = tonumber(s)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return false end
  local mantissa = string.match(s, '^[^eE]*')
  if v == 0 and string.find(mantissa, '[1-9]') then return false end  -- underflow
  return true
end
local CLAIMS = false
-- the key an entry lives in and that key's type (nil for a unique entry with claims,
-- which live in their value's own bucket and are changed by the client)
local function entry_key(root, d, line)
  local kind, name, value = split(line)
  if kind == 'e' then return root .. 'eq' .. d .. name .. d .. value, 'set' end
  if kind == 'r' then return root .. 'rng' .. d .. name, 'zset' end
  if kind == 'u' and not CLAIMS then return root .. 'uq' .. d .. name, 'hash' end
  return nil
end
-- need[key] = the type it must hold ('' for any: only read with EXISTS)
local function need_entries(need, root, d, set)
  for line in pairs(set) do
    local k, tp = entry_key(root, d, line)
    if k then need[k] = tp end
  end
end
-- nil when every needed key is declared and of its type; else the reply to give
local function check_keys(need)
  local declared = declared_keys()
  local missing = {}
  for k in pairs(need) do if not declared[k] then missing[#missing + 1] = k end end
  if #missing > 0 then
    table.sort(missing)
    return list_of({'KEYS'}, missing)
  end
  for k, want in pairs(need) do
    if want ~= '' then
      local t = redis.call('TYPE', k)['ok']
      if t ~= 'none' and t ~= want then return {'WRONGTYPE', k, t, want} end
    end
  end
  return nil
end
-- a read that is also the type check of its key (an error reply, not a script error)
local function read(want, command, key, ...)
  local r = redis.pcall(command, key, ...)
  if type(r) == 'table' and r.err then
    local t = redis.call('TYPE', key)['ok']
    if t ~= want then return nil, {'WRONGTYPE', key, t, want} end
    error(r.err)
  end
  return r
end
local function apply(root, d, id, line, add)
  local kind, name, value = split(line)
  if kind == 'u' and CLAIMS then return end
  if kind == 'e' then
    local k = root .. 'eq' .. d .. name .. d .. value
    if add then redis.call('SADD', k, id) else redis.call('SREM', k, id) end
  elseif kind == 'r' then
    local k = root .. 'rng' .. d .. name
    if add then redis.call('ZADD', k, value, id) else redis.call('ZREM', k, id) end
  elseif kind == 'u' then
    local k = root .. 'uq' .. d .. name
    if add then redis.call('HSET', k, value, id)
    elseif redis.call('HGET', k, value) == id then redis.call('HDEL', k, value) end
  end
end
-- drop every entry of an object (its record says which), and the object from all/exp
local function forget(root, d, id, rec, all, exp, old)
  for line in pairs(old) do apply(root, d, id, line, false) end
  redis.call('HDEL', rec, id)
  redis.call('ZREM', all, id)
  redis.call('ZREM', exp, id)
end
