--! include acl_lib
-- The commands of index_lib's writes, asked of the ACL before the first write (acl_lib):
-- each function follows the write function it is named after, command for command, so a
-- write the user may not finish is refused (NOPERM) before it starts.
-- apply: an entry line added (add) or removed
local function acl_apply(root, d, line, add)
  local k, tp = entry_key(root, d, line)
  if tp == 'set' then acl(add and 'sadd' or 'srem', k)
  elseif tp == 'zset' then acl(add and 'zadd' or 'zrem', k)
  elseif tp == 'hash' then
    if add then acl('hset', k) else acl('hget', k); acl('hdel', k) end
  end
end
-- ids_write of a plan of ids_plan_for (ids_apply_pages, then INCRBY of the count and
-- ids_settle: now, or at the call's end by ids_flush)
local function acl_ids(p)
  if p.zrem then acl('zrem', p.zrem) end
  local plan = p.plan
  if not plan then return end
  local dir, cnt = ids_dir(plan.root), ids_count_key(plan.root)
  if plan.op == 'add' then
    if plan.fresh then acl('zadd', dir) end
    if plan.upper then
      acl('zrem', plan.page)
      acl('zadd', plan.target)
      acl('zadd', dir)
    end
    acl('zadd', plan.page)
  else
    acl('zrem', plan.page)
    if plan.into then
      acl('zrange', plan.page)
      acl('zadd', plan.into)
      acl('del', plan.page)
      acl('zrem', dir)
    end
  end
  acl('incrby', cnt)
  -- ids_settle: the count at 0 after a removal (after an add it is at least 1: a count
  -- that is not a number >= 0 refuses the write before it, ids_check_count; a call of
  -- many writes sums its changes, so a count at 0 there needs one of its removals)
  if plan.op ~= 'add' then
    acl('zcard', dir)
    acl('exists', ids_page(plan.root, plan.d, ''))
    acl('del', dir)
    acl('del', cnt)
  end
end
-- forget: every old entry removed, the record (had), the ids plan, the expiry set
local function acl_forget(root, d, rec, exp, old, ids, had)
  for line in pairs(old) do acl_apply(root, d, line, false) end
  if had ~= false then acl('hdel', rec) end
  acl_ids(ids)
  acl('zrem', exp)
end
-- write_fields of a save or update (npairs pairs at A[at + 1 ..], removals up to last)
local function acl_fields(obj, npairs, at, existed, last)
  if npairs > 0 then acl('hset', obj) end
  if last > at + 2 * npairs then
    acl('hdel', obj)
    acl('exists', obj)
    acl('hset', obj)
  elseif npairs == 0 and not existed then
    acl('hset', obj)
  end
end
-- write_index (keep: the object keeps a record after the write)
local function acl_index(root, d, rec, old, new, every, ids, keep, had)
  for line in pairs(old) do
    if not new[line] then acl_apply(root, d, line, false) end
  end
  for line in pairs(new) do
    if every or not old[line] then acl_apply(root, d, line, true) end
  end
  if keep then
    for line in pairs(new) do
      if string.sub(line, 1, 1) == 'r' and string.sub(line, -2) == ANY then
        local kind, name, value = split(line)
        if value == '*' then acl('zscore', root .. 'rng' .. d .. name) end
      end
    end
    acl('hset', rec)
  elseif had then
    acl('hdel', rec)
  end
  acl_ids(ids)
end
-- write_expiry (had: the id's score read before, false: none)
local function acl_expiry(obj, exp, ttl, existed, had)
  if ttl == 'persist' then
    acl('persist', obj)
    if had ~= false then acl('zrem', exp) end
  elseif ttl ~= '' then
    acl('pexpire', obj)
    acl('zadd', exp)
    acl('pexpiretime', obj)
  elseif not existed then
    if had ~= false then acl('zrem', exp) end
  else
    acl('pexpiretime', obj)
    acl('zadd', exp)
    if had ~= false then acl('zrem', exp) end
  end
end
-- apply_counters (counter_lib) of these changes: HINCRBY, or HSET of the whole value (a
-- float, an int beyond 64 bits, a value moved from an old name), HDEL of an old name
local function acl_counters(obj, changes)
  for _, c in ipairs(changes) do
    if c[2] == 'i' then acl('hincrby', obj) end
    acl('hset', obj)
    if c[5] then acl('hdel', obj) end
  end
end
