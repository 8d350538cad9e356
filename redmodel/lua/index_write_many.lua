--! include clock
--! include index_lib
-- Whole saves and deletes of many objects of one bucket of an indexed model in one call,
-- in order, each all or nothing, each as index_write.lua would do it alone (the same
-- checks, entries, record, all-ids and expiry sets): the batched path of save_many and
-- delete_many. The types of the shared keys (all-ids, expiry, entry keys) are checked
-- once per call, and the call is one script run instead of one per object.
-- KEYS: every key of every object (obj, rec, all, exp, then the entry keys it expects),
-- deduplicated. ARGV: count, then per object: the positions in KEYS of its obj, rec, all
-- and exp, the count of its arguments, and its arguments as index_write.lua's ARGV
-- (mode save or delete, ':c' with claims).
-- Reply: per object, index_write.lua's answer, or (nothing of it written):
--   {'KEYS', missing...}  keys it needs that no object declared;
--   {'LATER'}             it must be written after an object of this call that was not
--                         (the same id, or a unique value that object gives up or takes),
--                         or a unique value it takes is held by another id (the client
--                         sends it alone, where the holder is judged).
local n = tonumber(ARGV[1])
if n == nil or n < 0 or n % 1 ~= 0 then return {'BADARG', 'count'} end

local typed = {}  -- key -> the type checked (or written) in this call
local function check(need)
  local declared = declared_keys()
  local missing = {}
  for k in pairs(need) do if not declared[k] then missing[#missing + 1] = k end end
  if #missing > 0 then
    table.sort(missing)
    return list_of({'KEYS'}, missing)
  end
  for k, want in pairs(need) do
    if want ~= '' and typed[k] ~= want then
      local t = redis.call('TYPE', k)['ok']
      if t ~= 'none' and t ~= want then return {'WRONGTYPE', k, t, want} end
      typed[k] = want
    end
  end
  return nil
end

local late, held = {}, {}  -- ids not written in this call; unique lines they touch
local function defer(id, old, new, reply)
  late[id] = true
  if not CLAIMS then
    for line in pairs(old) do if string.sub(line, 1, 1) == 'u' then held[line] = true end end
    for line in pairs(new) do if string.sub(line, 1, 1) == 'u' then held[line] = true end end
  end
  return reply
end
local function released(from, to)
  local out = {}
  if not CLAIMS then return out end
  for line in pairs(from) do
    if not to[line] and string.sub(line, 1, 1) == 'u' then out[#out + 1] = line end
  end
  table.sort(out)
  return out
end
local function answer(result, extra)
  if #extra > 0 then return list_of({'RELEASE', result}, extra) end
  return result
end

local function one(obj, rec, all, exp, A)
  local mode, id, root, d, objprefix = A[1], A[2], A[3], A[4], A[5]
  local ttl, changed, newtext = A[6], A[7], A[8] or ''
  CLAIMS = false
  if mode and string.sub(mode, -2) == ':c' then CLAIMS = true; mode = string.sub(mode, 1, -3) end
  if (mode ~= 'save' and mode ~= 'delete') or not id or id == '' or not root or not d
      or not objprefix or not changed or not obj or not rec or not all or not exp then
    return {'BADARG', 'mode or id'}
  end
  if not (ttl == '' or ttl == 'persist' or string.find(ttl, '^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$')) then
    return {'BADARG', 'ttl ' .. tostring(ttl)}
  end
  local given = lines(newtext)
  for line in pairs(given) do
    local kind, name, value = split(line)
    if not kind or (kind ~= 'e' and kind ~= 'r' and kind ~= 'u') or name == '' then
      return {'BADARG', 'entry ' .. line}
    end
    if kind == 'r' and not valid_score(value) then return {'BADARG', 'score ' .. value} end
  end
  local npairs = 0
  if mode == 'save' then
    npairs = tonumber(A[9])
    if npairs == nil or npairs < 0 or npairs % 1 ~= 0 or 9 + 2 * npairs > #A then
      return {'BADARG', 'pairs'}
    end
  end
  local refusal = check({[obj] = '', [rec] = '', [all] = 'zset', [exp] = 'zset'})
  if refusal then return defer(id, {}, given, refusal) end
  local objtype = redis.call('TYPE', obj)['ok']
  if objtype ~= 'none' and objtype ~= 'hash' then return {'WRONGTYPE', obj, objtype, 'hash'} end
  local exists = objtype == 'hash'
  local record
  record, refusal = read('hash', 'HGET', rec, id)
  if refusal then return refusal end
  local old = lines(record)
  if late[id] then return defer(id, old, given, {'LATER'}) end
  local new = given
  if mode == 'delete' then new = {} end

  local need = {}
  for line in pairs(old) do
    if not new[line] then
      if held[line] then return defer(id, old, new, {'LATER'}) end
      local k, tp = entry_key(root, d, line)
      if k then need[k] = tp end
    end
  end
  for line in pairs(new) do
    if not old[line] then
      if held[line] then return defer(id, old, new, {'LATER'}) end
      local k, tp = entry_key(root, d, line)
      if k then need[k] = tp end
    end
  end
  refusal = check(need)
  if refusal then
    if refusal[1] == 'KEYS' then return defer(id, old, new, refusal) end
    return refusal
  end
  if not CLAIMS and mode == 'save' then
    for line in pairs(new) do
      local kind, name, value = split(line)
      if kind == 'u' and not old[line] then
        local owner = redis.call('HGET', root .. 'uq' .. d .. name, value)
        if owner and owner ~= id then return defer(id, old, new, {'LATER'}) end
      end
    end
  end

  if mode == 'delete' then
    local gone = released(old, {})
    forget(root, d, id, rec, all, exp, old)
    if not exists then return answer(0, gone) end  -- as index_write.lua: none deleted
    redis.call('DEL', obj)
    return answer(1, gone)
  end
  if npairs > 0 then call_parts('HSET', obj, A, 10, 9 + 2 * npairs) end
  if #A > 9 + 2 * npairs then call_parts('HDEL', obj, A, 10 + 2 * npairs) end
  if npairs == 0 and redis.call('EXISTS', obj) == 0 then redis.call('HSET', obj, '\0', '') end
  local gone = released(old, new)
  for line in pairs(old) do if not new[line] then apply(root, d, id, line, false) end end
  for line in pairs(new) do if not old[line] then apply(root, d, id, line, true) end end
  local text = {}
  for line in pairs(new) do text[#text + 1] = line end
  table.sort(text)
  redis.call('HSET', rec, id, table.concat(text, '\n'))
  redis.call('ZADD', all, 0, id)
  if ttl == 'persist' then
    redis.call('PERSIST', obj)
    redis.call('ZREM', exp, id)
  elseif ttl ~= '' then
    redis.call('PEXPIRE', obj, ttl)
    redis.call('ZADD', exp, time_ms() + tonumber(ttl), id)
  elseif not exists then  -- a new hash has no expiry
    redis.call('ZREM', exp, id)
  else
    local pttl = redis.call('PTTL', obj)
    if pttl > 0 then redis.call('ZADD', exp, time_ms() + pttl, id)
    else redis.call('ZREM', exp, id) end
  end
  return answer(1, gone)
end

local out, at = {}, 2
for i = 1, n do
  local o, r, a, e, m = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]),
                        tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  if not (o and r and a and e and m) or m < 0 or at + 4 + m > #ARGV then
    return {'BADARG', 'object ' .. i}
  end
  local A = {}
  for j = 1, m do A[j] = ARGV[at + 4 + j] end
  out[i] = one(KEYS[o], KEYS[r], KEYS[a], KEYS[e], A)
  at = at + 5 + m
end
return out
