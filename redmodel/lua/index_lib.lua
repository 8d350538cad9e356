--! include clock
local SEP = '\31'
local function split(line)
  return string.match(line, '^([^\31]*)\31([^\31]*)\31(.*)$')
end
local function lines(text)
  local t = {}
  if text then for line in string.gmatch(text, '[^\n]+') do t[line] = true end end
  return t
end
local CLAIMS = false
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
local function forget(root, d, id, rec, all, exp)
  for line in pairs(lines(redis.call('HGET', rec, id))) do apply(root, d, id, line, false) end
  redis.call('HDEL', rec, id)
  redis.call('ZREM', all, id)
  redis.call('ZREM', exp, id)
end
-- drop the entries of objects whose expiry has passed: cost grows with their number only
local function sweep(root, d, objprefix, rec, all, exp)
  local now = time_ms()
  local ids = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
  for _, id in ipairs(ids) do
    local pttl = redis.call('PTTL', objprefix .. id)
    if pttl == -2 then forget(root, d, id, rec, all, exp)
    elseif pttl == -1 then redis.call('ZREM', exp, id)
    else redis.call('ZADD', exp, now + pttl, id) end
  end
  return #ids
end
