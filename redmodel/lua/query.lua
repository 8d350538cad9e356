--! include clock
local rec, all, exp = KEYS[1], KEYS[2], KEYS[3]
local root, d, objprefix = ARGV[1], ARGV[2], ARGV[3]
local count_only, order, desc = ARGV[4] == '1', ARGV[5], ARGV[6] == '1'
local offset, limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local cscore, cid = ARGV[9], ARGV[10]
-- sweep: drop the index entries of objects whose expiry has passed
local now = time_ms()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now)) do
  local pttl = redis.call('PTTL', objprefix .. id)
  if pttl == -2 then
    local text = redis.call('HGET', rec, id)
    if text then
      for line in string.gmatch(text, '[^\n]+') do
        local kind, name, value = string.match(line, '^([^\31]*)\31([^\31]*)\31(.*)$')
        if kind == 'e' then redis.call('SREM', root .. 'eq' .. d .. name .. d .. value, id)
        elseif kind == 'r' then redis.call('ZREM', root .. 'rng' .. d .. name, id)
        elseif kind == 'u' and redis.call('HGET', root .. 'uq' .. d .. name, value) == id then
          redis.call('HDEL', root .. 'uq' .. d .. name, value)
        end
      end
    end
    redis.call('HDEL', rec, id)
    redis.call('ZREM', all, id)
    redis.call('ZREM', exp, id)
  elseif pttl == -1 then redis.call('ZREM', exp, id)
  else redis.call('ZADD', exp, now + pttl, id) end
end
-- fast paths that Redis answers natively
local first, ntok = ARGV[11], #ARGV - 10
local function eqkey(i) return root .. 'eq' .. d .. ARGV[i] .. d .. ARGV[i + 1] end
if count_only then
  if first == 'ALL' and ntok == 1 then return {redis.call('ZCARD', all)} end
  if first == 'EQ' and ntok == 3 then return {redis.call('SCARD', eqkey(12))} end
  if first == 'RANGE' and ntok == 4 then
    return {redis.call('ZCOUNT', root .. 'rng' .. d .. ARGV[12], ARGV[13], ARGV[14])}
  end
end
if order ~= '' and first == 'ALL' and ntok == 1 and cid == '' then
  local k = root .. 'rng' .. d .. order
  local stop = -1
  if limit >= 0 then stop = offset + limit - 1 end
  local res
  if desc then res = redis.call('ZREVRANGE', k, offset, stop, 'WITHSCORES')
  else res = redis.call('ZRANGE', k, offset, stop, 'WITHSCORES') end
  local out = {redis.call('ZCARD', all)}
  for i = 1, #res, 2 do out[#out + 1] = res[i]; out[#out + 1] = res[i + 1] end
  return out
end
-- evaluate the expression into a set {id = true}
local function toset(list) local s = {} for _, v in ipairs(list) do s[v] = true end return s end
local function bound(text, low)
  if text == '-inf' then return -math.huge, true end
  if text == '+inf' then return math.huge, true end
  if string.sub(text, 1, 1) == '(' then return tonumber(string.sub(text, 2)), false end
  return tonumber(text), true
end
local function within(score, lo, hi)
  local l, li = bound(lo, true)
  local h, hi_in = bound(hi, false)
  if score == nil then return false end
  if li then if score < l then return false end elseif score <= l then return false end
  if hi_in then if score > h then return false end elseif score >= h then return false end
  return true
end
-- the extent of the term starting at token i (to skip it)
local function skip(i)
  local op = ARGV[i]
  if op == 'EQ' then return i + 3 end
  if op == 'RANGE' then return i + 4 end
  if op == 'ALL' then return i + 1 end
  if op == 'NOT' then return skip(i + 1) end
  local n, j = tonumber(ARGV[i + 1]), i + 2
  for _ = 1, n do j = skip(j) end
  return j
end
local eval
eval = function(i)
  local op = ARGV[i]
  if op == 'EQ' then return toset(redis.call('SMEMBERS', eqkey(i + 1))), i + 3 end
  if op == 'RANGE' then
    return toset(redis.call('ZRANGEBYSCORE', root .. 'rng' .. d .. ARGV[i + 1],
                            ARGV[i + 2], ARGV[i + 3])), i + 4
  end
  if op == 'ALL' then return toset(redis.call('ZRANGE', all, 0, -1)), i + 1 end
  if op == 'NOT' then
    local inner, j = eval(i + 1)
    local out = {}
    for _, id in ipairs(redis.call('ZRANGE', all, 0, -1)) do
      if not inner[id] then out[id] = true end
    end
    return out, j
  end
  local n, j = tonumber(ARGV[i + 1]), i + 2
  local eqs, ranges, others = {}, {}, {}
  for _ = 1, n do
    if ARGV[j] == 'EQ' then eqs[#eqs + 1] = eqkey(j + 1)
    elseif ARGV[j] == 'RANGE' then ranges[#ranges + 1] = j
    else others[#others + 1] = j end
    j = skip(j)
  end
  if op == 'OR' then
    local out = {}
    if #eqs > 0 then out = toset(redis.call('SUNION', unpack(eqs))) end
    for _, r in ipairs(ranges) do for id in pairs(eval(r)) do out[id] = true end end
    for _, o in ipairs(others) do for id in pairs(eval(o)) do out[id] = true end end
    return out, j
  end
  -- AND: intersect the equality sets on the server, then filter the candidates
  local base
  if #eqs > 0 then base = toset(redis.call('SINTER', unpack(eqs)))
  elseif #others > 0 then base = eval(others[1]); table.remove(others, 1)
  else base = eval(ranges[1]); table.remove(ranges, 1) end
  for _, o in ipairs(others) do
    local s = eval(o)
    for id in pairs(base) do if not s[id] then base[id] = nil end end
  end
  for _, r in ipairs(ranges) do
    local k = root .. 'rng' .. d .. ARGV[r + 1]
    for id in pairs(base) do
      if not within(tonumber(redis.call('ZSCORE', k, id)), ARGV[r + 2], ARGV[r + 3]) then
        base[id] = nil
      end
    end
  end
  return base, j
end
local found = eval(11)
local ids = {}
for id in pairs(found) do ids[#ids + 1] = id end
if count_only then return {#ids} end
local scores = {}
local sorted = order ~= '' or limit >= 0 or offset > 0 or cid ~= ''
if order ~= '' then
  local k = root .. 'rng' .. d .. order
  for _, id in ipairs(ids) do scores[id] = tonumber(redis.call('ZSCORE', k, id)) end
  table.sort(ids, function(a, b)
    if scores[a] ~= scores[b] then
      if desc then return scores[a] > scores[b] else return scores[a] < scores[b] end
    end
    if desc then return a > b else return a < b end
  end)
elseif sorted then
  table.sort(ids)
end
local out = {#ids}
local skipped, taken = 0, 0
local cs = tonumber(cscore)
for _, id in ipairs(ids) do
  local after = true
  if cid ~= '' then
    if order ~= '' then
      local s = scores[id]
      if s == cs then
        if desc then after = id < cid else after = id > cid end
      elseif desc then after = s < cs else after = s > cs end
    else
      after = id > cid
    end
  end
  if after then
    if skipped < offset then skipped = skipped + 1
    elseif limit < 0 or taken < limit then
      taken = taken + 1
      out[#out + 1] = id
      out[#out + 1] = order ~= '' and tostring(scores[id]) or ''
    else break end
  end
end
return out
