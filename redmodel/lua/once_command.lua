-- One plain command (INCRBY, RPUSH, LPOP, ZINCRBY, SADD, DEL, ...) under a write id.
-- KEYS: the write id's key, then the command's keys (its leading arguments).
-- ARGV: the expiry in ms, the client's protocol ('2' or '3'), the command's name, then its
-- other arguments.
--! include once_head
-- Lua passes at most ~8000 values to a call: long member lists of these commands are
-- sent in parts inside this one script (still atomic); the reply is their sum or the last.
local CHUNKED = {RPUSH = 'last', LPUSH = 'last', SADD = 'sum', SREM = 'sum',
                 ZREM = 'sum', HDEL = 'sum', ZADD = 'sum'}
local ZADD_FLAGS = {NX = true, XX = true, GT = true, LT = true, CH = true}
-- A counter's new value comes back to Lua as a double, exact only within 2**53: beyond
-- it the value's text is answered (read back by the command named here), which the
-- client turns into the int (redmodel._transport._wire.EXACT_INT_REPLIES). Without the
-- right to run that read, the double is answered as before.
local EXACT = {INCR = 'GET', INCRBY = 'GET', DECR = 'GET', DECRBY = 'GET', HINCRBY = 'HGET'}
-- replies whose arrays may hold nulls, which Lua under RESP3 loses (Redis 7.0: a nil ends
-- the table), and whose RESP2 form is the RESP3 one: read in RESP2
local RESP2_SAME = {HMGET = true, MGET = true, SORT = true, SORT_RO = true, HGETDEL = true,
                    HGETEX = true, GEOHASH = true}
local function once_body()
  -- the command's reply in the client's protocol, as the command alone answers it (a
  -- RESP3 client reads maps, doubles and nested pairs: a RESP2 reply read by it lost a
  -- ZPOPMIN pair; a RESP2 client reads the flat forms)
  local name = ARGV[2]
  if ARGV[1] == '3' and not RESP2_SAME[string.upper(name)] then redis.setresp(3) end
  local args = {}
  for i = 1, #KEYS do args[#args + 1] = KEYS[i] end
  for i = 3, #ARGV do args[#args + 1] = ARGV[i] end
  local upper = string.upper(name)
  local how = CHUNKED[upper]
  if #args <= 4000 or not how or #KEYS ~= 1 then
    local read = EXACT[upper]
    local back = read and {read, args[1], read == 'HGET' and args[2] or nil}
    if back and not redis.acl_check_cmd(unpack(back)) then back = nil end
    local r = redis.call(name, unpack(args))
    if back and type(r) == 'number' and (r >= 9007199254740992 or r <= -9007199254740992) then
      return redis.call(unpack(back))
    end
    return r
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
