--! include index_lib
--! include acl_lib
-- A repair step writes more than once: every command it (or a library it includes)
-- can call is allowed before anything (acl_lib.lua), asked by name on a declared key
-- (each key is checked at the EVALSHA; a command is asked with its key and sample
-- arguments: Redis 7.0 and Valkey 9 crash on acl_check_cmd('set') without its key)
if KEYS[1] then
  for _, c in ipairs({
    {'del'}, {'exists'}, {'hdel', 'f'}, {'hget', 'f'}, {'hmget', 'f'}, {'hset', 'f', 'v'},
    {'incrby', '1'}, {'persist'}, {'pexpire', '1'}, {'pexpiretime'}, {'sadd', 'm'},
    {'srem', 'm'}, {'type'}, {'zadd', '1', 'm'}, {'zcard'}, {'zrange', '0', '1'}, {'zrem',
    'm'}, {'zrevrangebylex', '+', '-'}, {'zscore', 'm'}
  }) do if not redis.acl_check_cmd(c[1], KEYS[1], unpack(c, 2)) then
    return redis.error_reply(acl_text({'NOPERM', c[1], KEYS[1]}))
  end end
  if not redis.acl_check_cmd('time') then
    return redis.error_reply(acl_text({'NOPERM', 'time', ''}))
  end
end
-- Repair of one index key (reindex, after the objects' own entries were rebuilt): drops
-- each listed member its object does not produce. An object's entries are its record
-- where it has one (authoritative: written with them); an object without one (the common
-- case since issue 17 item 4 part 2) has by definition the entries its stored fields
-- compute to, which only the client can compute: it sends, per member, the stored
-- indexed fields it judged from ("state": n, then n times: stored field, '1' | '0'
-- (present), its text), 'g' when it found the object gone (and no record), or 'r' when
-- it judged by a record. Per member the script:
--   a record now -> judges by the record (as it always did);
--   no record, state 'r' -> changed meanwhile (a write dropped it): not touched, answered;
--   no record, its object (objprefix .. id, declared in KEYS) gone, or its key of another
--     type than hash (no object: no redmodel write makes one there) -> the member is stale;
--   no record, state 'g', the object exists -> written since: not touched, answered;
--   no record, object's fields still exactly the state -> the client's judgment stands;
--   no record, fields differ -> not touched, answered.
-- KEYS: the index key, the bucket's record hash, then the objects sent with a state.
-- ARGV: 'eq', field, value text, objprefix, then per member: id, state
--         (a member its object does not produce: SREM)
--       'rng', field, objprefix, then per member: id, score ('' none), state
--         (score: what the object's fields give; the record's score wins where there is
--         one: ZADD it where the stored score differs, ZREM when it has none)
--       'uq', name, objprefix, then per pair: value, owner, state
--         (an owner that does not hold the value: HDEL, if the hash still names it)
--       'unheld', name, value, owner, n, then n times: stored field, '1' | '0' (present),
--         its text                       (KEYS[3]: the owner's object. An owner whose
--                                         record says it holds the value, but whose stored
--                                         fields no longer do -- changed by raw commands --
--                                         gives it up: HDEL, if the unique index still names
--                                         it and those fields are still exactly as the client
--                                         read them when it found that they do not hold it;
--                                         then, optionally, the writer's id)
-- Answers {'FIXED', how many members changed, the members not touched because
-- their object changed since the client read it (ids; values for 'uq')...}; 'unheld'
-- answers {'FIXED', 1} when the value is free after it ran (given up by this call, by an
-- earlier copy of it whose reply was lost, or free already) or held by the writer, else
-- {'FIXED', 0}: a state, the same for a first run and its resend (32F).
local kind = ARGV[1]
local key, rec = KEYS[1], KEYS[2]
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
  -- answered by state, not by what this copy did: free now (or the writer's) -> 1, so a
  -- resend after a lost reply (its first copy gave the value up) answers as the first did
  -- and the refused write is sent again whichever copy ran (32F)
  local holder = redis.call('HGET', key, value)
  if not holder or (ARGV[6 + 3 * n] and holder == ARGV[6 + 3 * n]) then
    return {'FIXED', 1}
  end
  if holder ~= owner or redis.call('EXISTS', obj) == 0 then
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
end

local declared = declared_keys()
-- the judge of one member's object: 'record' and its lines, 'object' (the client's
-- judgment stands: its stored fields are as sent, or it is gone: 'gone'), or nil
-- (changed since the client read it: not touched). i: where its state starts in ARGV;
-- answers also where the next member starts, or nil and a refusal
local function judge(id, objprefix, i)
  local state = ARGV[i]
  local text = redis.call('HGET', rec, id)
  local n = 0
  if state ~= 'r' and state ~= 'g' then
    n = tonumber(state)
    if n == nil or n < 0 or i + 3 * n > #ARGV then return nil, nil, {'BADARG', 'state'} end
  end
  local next_i = i + 1 + 3 * n
  if text then return 'record', next_i, lines(text) end
  if state == 'r' then return nil, next_i end
  local obj = objprefix .. id
  if not declared[obj] then return nil, nil, {'BADARG', 'object not declared'} end
  local t = redis.call('TYPE', obj)['ok']
  -- a key of another type at the object's key is no object (overwritten outside redmodel,
  -- and no redmodel write makes it one): it produces no entry, as a gone object
  if t ~= 'hash' then return 'gone', next_i end
  if state == 'g' then return nil, next_i end  -- seen gone, written since: judged again
  for j = i + 1, i + 3 * n, 3 do
    local now = redis.call('HGET', obj, ARGV[j])
    if (ARGV[j + 1] == '1') ~= (now ~= false) or (now and now ~= ARGV[j + 2]) then
      return nil, next_i
    end
  end
  return 'object', next_i
end

local out = {'FIXED', 0}
if kind == 'eq' then
  local line = 'e' .. SEP .. ARGV[2] .. SEP .. ARGV[3]
  local objprefix = ARGV[4]
  local i = 5
  while i <= #ARGV do
    local id = ARGV[i]
    local how, nxt, own = judge(id, objprefix, i + 1)
    if not nxt then return own end
    if how == nil then out[#out + 1] = id
    elseif (how ~= 'record' or not own[line]) and redis.call('SREM', key, id) == 1 then
      fixed = fixed + 1
    end
    i = nxt
  end
elseif kind == 'rng' then
  local head = 'r' .. SEP .. ARGV[2] .. SEP
  local objprefix = ARGV[3]
  local i = 4
  while i <= #ARGV do
    local id, given = ARGV[i], ARGV[i + 1]
    local how, nxt, own = judge(id, objprefix, i + 2)
    if not nxt then return own end
    if how == nil then out[#out + 1] = id
    else
      local score
      if how == 'record' then
        for l in pairs(own) do
          if string.sub(l, 1, #head) == head then score = string.sub(l, #head + 1) end
        end
      elseif how == 'object' and given ~= '' then
        score = given
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
    i = nxt
  end
else
  local name, objprefix = ARGV[2], ARGV[3]
  local i = 4
  while i <= #ARGV do
    local value, owner = ARGV[i], ARGV[i + 1]
    local line = 'u' .. SEP .. name .. SEP .. value
    local how, nxt, own = judge(owner, objprefix, i + 2)
    if not nxt then return own end
    if how == nil then out[#out + 1] = value
    elseif redis.call('HGET', key, value) == owner and (how ~= 'record' or not own[line]) then
      redis.call('HDEL', key, value)
      fixed = fixed + 1
    end
    i = nxt
  end
end
out[2] = fixed
return out
