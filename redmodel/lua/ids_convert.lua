--! include ids_lib
--! include acl_lib
-- A repair step writes more than once: every command it (or a library it includes)
-- can call is allowed before anything (acl_lib.lua), asked by name on a declared key
-- (each key is checked at the EVALSHA; a command is asked with its key and sample
-- arguments: Redis 7.0 and Valkey 9 crash on acl_check_cmd('set') without its key)
if KEYS[1] then
  for _, c in ipairs({
    {'del'}, {'exists'}, {'get'}, {'incrby', '1'}, {'scard'}, {'set', 'v'},
    {'srandmember'}, {'srem', 'm'}, {'type'}, {'zadd', '1', 'm'}, {'zcard'}, {'zrange',
    '0', '1'}, {'zrem', 'm'}, {'zrevrangebylex', '+', '-'}, {'zscore', 'm'}
  }) do if not redis.acl_check_cmd(c[1], KEYS[1], unpack(c, 2)) then
    return redis.error_reply(acl_text({'NOPERM', c[1], KEYS[1]}))
  end end
end
-- Converts a bucket's all-ids index from the format of older versions (`all`: a ZSET,
-- every score 0, or the older SET; `spare`: where an interrupted SET -> ZSET conversion of
-- an older version left ids, a SET) into the pages of ids_lib.lua, a bounded step at a
-- time, and checks the count of the pages (docs/design.md "The all-ids index in pages").
--
-- KEYS: all, spare, ids (the directory), idn (the count). Page keys are under the same
--   root (root = ids without 'ids'): the one amendment of "every key in KEYS".
-- ARGV: mode ('move' | 'count' | 'fix' | 'check' | 'mend' | 'drop'), the delimiter, then for
--   'move' how many ids per step; for 'check' / 'mend' the start and the budget of one
--   step of ids_mend (ids_lib.lua); for 'drop' the bound of a page the directory does not
--   list.
--
-- 'move': moves up to n ids of spare, then of all, into the pages: each id is added to the
--   pages (nothing when it is there already: a write since the upgrade put it there) and
--   then removed from its old key, so every id is at every moment in the pages or the old
--   key or both, and a step sent again (a lost reply) only moves the next ids. An old key
--   left empty is gone (Redis deletes an empty set). Answers {'LEFT', ids left in the old
--   keys} (0: converted). The types of the old keys, the directory, the count, and of the
--   page each id goes into are checked before the first write; a split's new page is
--   checked in the plan of its id, before that id's write (a planted key there refuses the
--   step with the earlier ids of it moved whole).
-- 'count' / 'fix': the number of ids of every page against the count: {'COUNT', counted,
--   recorded (the count's text, '0' when absent)}; 'fix' also writes the counted number
--   when they differ, over a count holding no integer >= 0 too (a STRING under the index
--   root is redmodel's: this is its repair; writes refuse such a count, naming it). One
--   call reads the size of every page (about 1 command per 64 ids of the bucket).
-- 'check' / 'mend': one bounded step of verifying / mending the pages (ids_mend).
-- 'drop': deletes a key named like a page that the directory does not list: {'DROPPED', n}.
-- 'move' and 'mend' count the pages first when the count holds no integer >= 0.
-- Refusals: {'WRONGTYPE', key, type, expected}, {'BADARG', what}.
local all, spare, dir, cnt = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, d = ARGV[1], ARGV[2]
local root = string.sub(dir, 1, -4)

-- the key's type, or a refusal when it is none of the allowed (`want`: the type named)
local function typed_as(key, want, also)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' or t == want or t == also then return t, nil end
  return t, {'WRONGTYPE', key, t, want}
end

local _, bad = typed_as(dir, 'zset')
if bad then return bad end
_, bad = typed_as(cnt, 'string')
if bad then return bad end

-- the ids of every page counted, against the count's text ('0' when absent); fix: the
-- count set to the number counted (also over a count that holds no integer >= 0: a
-- STRING under the index root is redmodel's, and this is its repair)
local function recount(fix)
  local total = 0
  for _, bound in ipairs(redis.call('ZRANGE', dir, 0, -1)) do
    local n
    n, bad = ids_read('zset', 'ZCARD', ids_page(root, d, bound))
    if bad then return nil, nil, bad end
    total = total + n
  end
  local recorded = redis.call('GET', cnt) or '0'
  if fix and recorded ~= tostring(total) then
    if total == 0 then redis.call('DEL', cnt) else redis.call('SET', cnt, total) end
  end
  return total, recorded
end

if mode == 'count' or mode == 'fix' then
  local total, recorded
  total, recorded, bad = recount(mode == 'fix')
  if bad then return bad end
  return {'COUNT', total, recorded}
end
if mode == 'check' then return ids_mend(root, d, false, ARGV[3], tonumber(ARGV[4])) end
if mode == 'drop' then
  -- a key named like a page that the directory does not list: never read by anything (its
  -- ids are looked for in the pages the directory lists), deleted
  if redis.call('ZSCORE', dir, ARGV[3]) then return {'DROPPED', 0} end
  local page = ids_page(root, d, ARGV[3])
  _, bad = typed_as(page, 'zset')
  if bad then return bad end
  return {'DROPPED', redis.call('DEL', page)}
end
-- the steps below write through ids_lib, which refuses a count holding no integer >= 0:
-- it is counted again first
if ids_check_count(root) then
  _, _, bad = recount(true)
  if bad then return bad end
end
if mode == 'mend' then return ids_mend(root, d, true, ARGV[3], tonumber(ARGV[4])) end
if mode ~= 'move' then return {'BADARG', 'mode'} end
local n = tonumber(ARGV[3])
if n == nil or n < 1 or n ~= math.floor(n) then return {'BADARG', 'count'} end

local ts
ts, bad = typed_as(spare, 'set')
if bad then return bad end
local ta
ta, bad = typed_as(all, 'zset', 'set')
if bad then return bad end

-- the ids of this step, from spare first
local src, ids, kind
if ts == 'set' then
  src, kind, ids = spare, 'set', redis.call('SRANDMEMBER', spare, n)
elseif ta == 'set' then
  src, kind, ids = all, 'set', redis.call('SRANDMEMBER', all, n)
elseif ta == 'zset' then
  src, kind, ids = all, 'zset', redis.call('ZRANGE', all, 0, n - 1)
else
  return {'LEFT', 0}
end
table.sort(ids, ids_before)

-- the page each id goes into, checked before the first write
local seen = {}
for _, id in ipairs(ids) do
  local bound, _, refusal = ids_bound_of(root, id)
  if refusal then return refusal end
  if not seen[bound] then
    seen[bound] = true
    local page = ids_page(root, d, bound)
    _, bad = typed_as(page, 'zset')
    if bad then return bad end
  end
end

local typed = {}
for _, id in ipairs(ids) do
  local plan
  plan, bad = ids_plan_add(root, d, id, typed)
  if bad then return bad end
  ids_apply(plan)
  if kind == 'set' then redis.call('SREM', src, id) else redis.call('ZREM', src, id) end
end

local left = 0
if redis.call('EXISTS', spare) == 1 then left = left + redis.call('SCARD', spare) end
if ta == 'set' then left = left + redis.call('SCARD', all)
elseif ta == 'zset' then left = left + redis.call('ZCARD', all) end
return {'LEFT', left}
