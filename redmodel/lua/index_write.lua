--! include index_lib
local obj, rec, all, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, id, root, d, objprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if string.sub(mode, -2) == ':c' then CLAIMS = true; mode = string.sub(mode, 1, -3) end
-- with claims (a bucketed model), unique values are claimed in their own slots by the
-- client before this runs; here we only report the ones this write gives up
local function released(old, new)
  local out = {}
  for line in pairs(old) do
    if not new[line] and string.sub(line, 1, 1) == 'u' then out[#out + 1] = line end
  end
  return out
end
local ttl, changed, newtext = ARGV[6], ARGV[7], ARGV[8]
sweep(root, d, objprefix, rec, all, exp)
local exists = redis.call('EXISTS', obj) == 1
if mode ~= 'save' and not exists then
  if mode == 'incr' then return false end
  return 0
end
if mode == 'delete' then
  local gone = released(lines(redis.call('HGET', rec, id)), {})
  forget(root, d, id, rec, all, exp)
  redis.call('DEL', obj)
  if CLAIMS and #gone > 0 then return {'RELEASE', 1, unpack(gone)} end
  return 1
end
local old = lines(redis.call('HGET', rec, id))
local new = {}
local result = 1
if mode == 'incr' then
  result = redis.call(ARGV[9], obj, ARGV[10], ARGV[11])
  for line in pairs(old) do
    local kind, name = split(line)
    if name ~= ARGV[12] then new[line] = true end
  end
  -- HINCRBY answers a number (its exact integer text: tostring keeps 14 digits only),
  -- HINCRBYFLOAT answers Redis' own text of the float
  local text = result
  if type(result) == 'number' then text = string.format('%d', result) end
  if ARGV[13] == '1' then new['e' .. SEP .. ARGV[12] .. SEP .. text] = true end
  if ARGV[14] == '1' then new['r' .. SEP .. ARGV[12] .. SEP .. text] = true end
elseif mode == 'expire' then
  new = old
else
  if changed ~= '*' then
    local ch = {}
    for name in string.gmatch(changed, '[^\31]+') do ch[name] = true end
    for line in pairs(old) do
      local kind, name = split(line)
      if not ch[name] then new[line] = true end
    end
  end
  for line in pairs(lines(newtext)) do new[line] = true end
  for line in pairs(new) do
    if not old[line] then
      local kind, name, value = split(line)
      if kind == 'u' and not CLAIMS then
        local owner = redis.call('HGET', root .. 'uq' .. d .. name, value)
        if owner and owner ~= id then return {'UNIQUE', name, value} end
      end
    end
  end
  local npairs = tonumber(ARGV[9])
  if npairs > 0 then redis.call('HSET', obj, unpack(ARGV, 10, 9 + 2 * npairs)) end
  if #ARGV > 9 + 2 * npairs then redis.call('HDEL', obj, unpack(ARGV, 10 + 2 * npairs)) end
  if redis.call('EXISTS', obj) == 0 then redis.call('HSET', obj, '\0', '') end
end
local gone = CLAIMS and released(old, new) or {}
for line in pairs(old) do if not new[line] then apply(root, d, id, line, false) end end
for line in pairs(new) do if not old[line] then apply(root, d, id, line, true) end end
local text = {}
for line in pairs(new) do text[#text + 1] = line end
table.sort(text)
redis.call('HSET', rec, id, table.concat(text, '\n'))
redis.call('ZADD', all, 0, id)
if ttl == 'persist' then
  local had = redis.call('PERSIST', obj)
  if mode == 'expire' then result = had end
  redis.call('ZREM', exp, id)
elseif ttl ~= '' then
  redis.call('PEXPIRE', obj, ttl)
  redis.call('ZADD', exp, time_ms() + tonumber(ttl), id)
else
  local pttl = redis.call('PTTL', obj)
  if pttl > 0 then redis.call('ZADD', exp, time_ms() + pttl, id)
  else redis.call('ZREM', exp, id) end
end
if #gone > 0 then return {'RELEASE', result, unpack(gone)} end
return result
