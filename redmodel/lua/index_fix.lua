--! include index_lib
-- Repair of one index key against the records (reindex, after the objects' own entries
-- were rebuilt): drops each listed member whose object's record does not hold it.
-- KEYS: the index key, the bucket's record hash.
-- ARGV: 'eq', field, value text, ids...  (a member whose record lacks the entry: SREM)
--       'rng', field, ids...             (a score the record disagrees with: ZADD the
--                                         record's score, or ZREM when it has none)
--       'uq', name, value, owner, ...    (an owner whose record lacks it: HDEL)
--       'unheld', name, value, owner, n, then n times: stored field, '1' | '0' (present),
--         its text                       (KEYS[3]: the owner's object. An owner whose
--                                         record says it holds the value, but whose stored
--                                         fields no longer do -- changed by raw commands --
--                                         gives it up: HDEL, if the unique index still names
--                                         it and those fields are still exactly as the client
--                                         read them when it found that they do not hold it)
-- Answers {'FIXED', how many members changed}.
local key, rec = KEYS[1], KEYS[2]
local kind = ARGV[1]
local want = ({eq = 'set', rng = 'zset', uq = 'hash', unheld = 'hash'})[kind]
if not want then return {'BADARG', 'kind'} end
local refusal = check_keys({[key] = want, [rec] = 'hash'})
if refusal then return refusal end
local fixed = 0
if kind == 'unheld' then
  local obj, value, owner, n = KEYS[3], ARGV[3], ARGV[4], tonumber(ARGV[5])
  if not obj or not n then return {'BADARG', 'unheld'} end
  refusal = check_keys({[obj] = 'hash'})
  if refusal then return refusal end
  if redis.call('HGET', key, value) ~= owner or redis.call('EXISTS', obj) == 0 then
    return {'FIXED', 0}
  end
  for i = 6, 5 + 3 * n, 3 do
    local now = redis.call('HGET', obj, ARGV[i])
    if (ARGV[i + 1] == '1') ~= (now ~= false) or (now and now ~= ARGV[i + 2]) then
      return {'FIXED', 0}  -- changed since the client looked: it decides again
    end
  end
  redis.call('HDEL', key, value)
  return {'FIXED', 1}
elseif kind == 'eq' then
  local line = 'e' .. SEP .. ARGV[2] .. SEP .. ARGV[3]
  for i = 4, #ARGV do
    local id = ARGV[i]
    if not lines(redis.call('HGET', rec, id))[line] and redis.call('SREM', key, id) == 1 then
      fixed = fixed + 1
    end
  end
elseif kind == 'rng' then
  local head = 'r' .. SEP .. ARGV[2] .. SEP
  for i = 3, #ARGV do
    local id = ARGV[i]
    local score
    for line in pairs(lines(redis.call('HGET', rec, id))) do
      if string.sub(line, 1, #head) == head then score = string.sub(line, #head + 1) end
    end
    local now = redis.call('ZSCORE', key, id)
    if score and valid_score(score) then
      if not now or tonumber(now) ~= tonumber(score) then
        redis.call('ZADD', key, score, id)
        fixed = fixed + 1
      end
    elseif now then
      redis.call('ZREM', key, id)
      fixed = fixed + 1
    end
  end
else
  local name = ARGV[2]
  for i = 3, #ARGV - 1, 2 do
    local value, owner = ARGV[i], ARGV[i + 1]
    local line = 'u' .. SEP .. name .. SEP .. value
    if redis.call('HGET', key, value) == owner
        and not lines(redis.call('HGET', rec, owner))[line] then
      redis.call('HDEL', key, value)
      fixed = fixed + 1
    end
  end
end
return {'FIXED', fixed}
