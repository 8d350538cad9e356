--! include index_lib
--! include index_acl
-- The sweep of expired objects' entries, in two steps so that every key is declared:
-- 'due' (KEYS rec, exp; ARGV 'due', limit) writes nothing and answers up to `limit` ids
-- whose expiry time has passed, each with its record: {id, record, ...};
-- 'apply' (KEYS rec, all, exp, the all-ids pages' directory and count (root ids, root
-- idn), then the objects and the entry keys of those records; ARGV 'apply', root, d,
-- objprefix, ids...) drops the entries of each of those ids whose object is gone, or whose
-- key holds another type than a hash (no object; the key is left alone), and the id from
-- the all-ids pages, re-schedules the ones still alive, and answers {'SWEPT', how
-- many it dropped, the keys of the wrong type it left alone...}.
-- An id whose record changed meanwhile (a key not declared) is left for the next sweep.
local step = ARGV[1]
-- with claims, unique values live in their own buckets: a claim whose owner is gone is
-- taken over by the next claimer, so the sweep leaves them alone
if string.sub(step, -2) == ':c' then CLAIMS = true; step = string.sub(step, 1, -3) end
if step == 'due' then
  local rec, exp = KEYS[1], KEYS[2]
  local refusal = check_keys({[rec] = 'hash', [exp] = 'zset'})
  if refusal then return refusal end
  local limit = tonumber(ARGV[2])
  if limit == nil or limit < 1 then return {'BADARG', 'limit'} end
  local out = {'DUE'}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', time_ms(), 'LIMIT', 0, limit)) do
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGET', rec, id) or ''
  end
  return out
end
if step ~= 'apply' then return {'BADARG', 'step'} end
local rec, all, exp = KEYS[1], KEYS[2], KEYS[3]
local root, d, objprefix = ARGV[2], ARGV[3], ARGV[4]
if not (root and d and objprefix) then return {'BADARG', 'root'} end
local refusal = check_keys(ids_keys({[rec] = 'hash', [all] = '', [exp] = 'zset',
                                     [root .. 'ids'] = 'zset'}, root))
if refusal then return refusal end
local _
_, refusal = all_state(all)
if refusal then return refusal end
local typed = {}
refusal = ids_check_count(root, typed)  -- the count's key, once before the first write
if refusal then return refusal end
local declared = declared_keys()
local now = time_ms()
local plan = {}
local need = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', exp, id)
  local key = objprefix .. id
  if score and tonumber(score) <= now and declared[key] then
    local old = lines(redis.call('HGET', rec, id))
    local mine, ok = {}, true
    need_entries(mine, root, d, old)
    for k in pairs(mine) do if not declared[k] then ok = false end end
    if ok then
      for k, tp in pairs(mine) do need[k] = tp end
      plan[#plan + 1] = {id, key, old}
    end
  end
end
-- an entry key of the wrong type (overwritten outside redmodel) holds none of these
-- objects' entries: it is left alone (verify reports it, reindex refuses until it is
-- deleted, a query that reads it names it), and the rest of their entries are dropped,
-- so one stray key does not stop every query of the model
local bad, badlist = {}, {}
for k, want in pairs(need) do
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'none' and t ~= want then bad[k] = true; badlist[#badlist + 1] = k end
end
local dropped = 0
local deltas = {}
-- the commands of every object's writes on the keys known now are allowed before the
-- first write (index_acl.lua); the all-ids pages of each are planned (and asked) after the
-- earlier objects' writes: a refusal there ends the sweep before that object (the next
-- sweep starts with it, and answers the refusal before its first write)
for _, p in ipairs(plan) do
  acl('pexpiretime', p[2])
  acl('type', p[2])
  for line in pairs(p[3]) do acl_apply(root, d, line, false) end
end
if #plan > 0 then
  acl('hdel', rec)
  acl('zrem', exp)
  acl('zadd', exp)
  acl('zrevrangebylex', root .. 'ids')
end
acl_ok()
local wrote = false
for _, p in ipairs(plan) do
  local id, key, old = p[1], p[2], p[3]
  local at = redis.call('PEXPIRETIME', key)  -- the stored expiry, exactly
  -- a key of another type at the object's key is no object (a raw SET, RPUSH, ... over
  -- it): the object is gone, its entries are dropped and that key is left alone
  if at ~= -2 and redis.call('TYPE', key)['ok'] ~= 'hash' then at = -2 end
  if at == -2 then
    local keep = {}
    for line in pairs(old) do
      local k = entry_key(root, d, line)
      if not (k and bad[k]) then keep[line] = true end
    end
    -- its place among the ids, planned right before it is forgotten (the earlier ids'
    -- joins move pages). A wrong-typed page (or the previous page a join would fill) is
    -- left alone as a wrong-typed entry key is: the rest of the object is dropped (its
    -- expiry too, so no later sweep finds it again), the key reported (verify reports
    -- the id the pages keep, reindex rebuilds them once the key is deleted)
    local planned, ids, no = pcall(ids_plan_for, root, d, id, all, true, true, typed)
    if not planned and not wrote then error({err = tostring(ids)}) end
    if not planned then break end  -- a page read refused (an ACL): the next sweep's
    if not ids then
      if not bad[no[2]] then bad[no[2]] = true; badlist[#badlist + 1] = no[2] end
      ids = all_state(all) == 'zset' and {zrem = all, id = id} or NO_IDS
    end
    acl_ids(ids)
    local refused = acl_refusal()
    if refused and not wrote then error({err = acl_text(refused)}) end
    if refused then break end
    wrote = true
    forget(root, d, id, rec, exp, keep, ids, deltas)
    dropped = dropped + 1
  elseif at == -1 then redis.call('ZREM', exp, id); wrote = true
  else redis.call('ZADD', exp, at, id); wrote = true end
end
ids_flush(deltas)
table.sort(badlist)
return {'SWEPT', dropped, unpack(badlist)}
