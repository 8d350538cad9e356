-- One plain command (INCRBY, RPUSH, LPOP, ZINCRBY, SADD, DEL, ...) under a write id.
-- KEYS: the write id's key, then the command's keys (its leading arguments).
-- ARGV: the expiry in ms, the command's name, then its other arguments.
--! include once_head
-- Lua passes at most ~8000 values to a call: long member lists of these commands are
-- sent in parts inside this one script (still atomic); the reply is their sum or the last.
local CHUNKED = {RPUSH = 'last', LPUSH = 'last', SADD = 'sum', SREM = 'sum',
                 ZREM = 'sum', HDEL = 'sum', ZADD = 'sum'}
local ZADD_FLAGS = {NX = true, XX = true, GT = true, LT = true, CH = true}
local function once_body()
  local name = ARGV[1]
  local args = {}
  for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
  for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
  local how = CHUNKED[string.upper(name)]
  if #args <= 4000 or not how or #KEYS ~= 1 then
    return redis.call(name, unpack(args))
  end
  local head, i = {args[1]}, 2
  while string.upper(name) == 'ZADD' and args[i] and ZADD_FLAGS[string.upper(args[i])] do
    head[#head + 1] = args[i]
    i = i + 1
  end
  local total = 0
  while i <= #args do
    local part = {}
    for j = 1, #head do part[j] = head[j] end
    for j = i, math.min(i + 3999, #args) do part[#part + 1] = args[j] end
    local r = redis.call(name, unpack(part))
    if how == 'sum' then total = total + r else total = r end
    i = i + 4000
  end
  return total
end
--! include once_tail
