-- The all-ids index of a bucket in pages (issue 17 item 4; docs/design.md "The all-ids
-- index in pages"): the format and its operations (tested alone by tests/test_ids_pages.py),
-- used by the write scripts through index_lib.lua (ids_plan_for, ids_write).
--
-- Keys (root = the bucket's index root, d = the delimiter):
--   root .. 'ids'             the directory: a ZSET, every score 0, members = the lower
--                             bound of each page; the first page's bound is '' (it exists
--                             as soon as one id was ever added, and is never removed)
--   root .. 'ids' .. d .. b   the page of bound b: a ZSET, every score 0, members = the
--                             ids >= b and < the next bound (byte order, as Redis sorts)
--   root .. 'idn'             the count of every id of every page (a STRING, an integer)
-- No escaped id or other index key can produce these names: object keys never start with
-- the index root, and the index's own names under it are rec, all, exp, reindex, eq<d>,
-- rng<d>, uq<d>.
--
-- Page keys cannot be declared in KEYS in advance (the client does not know the pages):
-- they share the hash slot of the root (every index key of a bucket does) and the ACL rule
-- of the index keys covers them (docs/design.md records this amendment of the rule that
-- every key is in KEYS).
--
-- Every operation is two phases, as the write scripts are: ids_plan_* only reads (each read
-- is also the type check of its key) and answers a plan or a refusal
-- {'WRONGTYPE', key, type, expected}; ids_apply writes the plan. A script calls every plan
-- of an object before the object's first write, so a wrong-typed directory, page or count
-- refuses the write whole.
local IDS_MAX = 64         -- a page splits in two when it would pass this many ids
local IDS_MERGE = 16       -- a page left with fewer ids joins the previous page ...
local IDS_JOINED = 32      -- ... when the two hold at most this many together

local function ids_dir(root) return root .. 'ids' end
local function ids_count_key(root) return root .. 'idn' end
local function ids_page(root, d, bound) return root .. 'ids' .. d .. bound end

-- a read that is also the type check of its key
local function ids_read(want, command, key, ...)
  local r = redis.pcall(command, key, ...)
  if type(r) == 'table' and r.err then
    local t = redis.call('TYPE', key)['ok']
    if t ~= want and t ~= 'none' then return nil, {'WRONGTYPE', key, t, want} end  -- absent: another error (NOPERM)
    error(r.err)
  end
  return r
end

-- byte order (Lua's own string comparison follows the server's locale). The common prefix
-- is skipped 8 bytes at a time (two string.sub and one comparison instead of 16 string.byte:
-- ids of one chunk share most of their bytes; about 4x faster on 26-byte ids), then the
-- first differing byte decides (a string that ends first, a prefix of the other, is before)
local function ids_before(a, b)
  if a == b then return false end
  local n = #a
  if #b < n then n = #b end
  local sub, byte = string.sub, string.byte
  for i = 1, n, 8 do
    local j = i + 7
    if sub(a, i, j) ~= sub(b, i, j) then
      for k = i, j do
        local x, y = byte(a, k), byte(b, k)
        if x ~= y then
          if x == nil then return true end
          if y == nil then return false end
          return x < y
        end
      end
    end
  end
  return #a < #b
end

-- whether a count's text is an integer >= 0 as INCRBY reads it (no sign, no leading zero,
-- within 64 bits: 18 digits is more ids than any server holds)
local function ids_count_ok(v)
  return v == '0' or (#v <= 18 and string.find(v, '^[1-9]%d*$') ~= nil)
end

-- the count's key checked: absent, or a STRING holding an integer >= 0. typed (optional):
-- key -> type already checked in this call
local function ids_check_count(root, typed)
  local cnt = ids_count_key(root)
  if typed and typed[cnt] == 'count' then return nil end
  local v, bad = ids_read('string', 'GET', cnt)
  if bad then return bad end
  if v and not ids_count_ok(v) then return {'WRONGTYPE', cnt, 'string', 'count'} end
  if typed then typed[cnt] = 'count' end
  return nil
end

-- the bound of the page an id belongs in ('' when the directory is empty or absent) and
-- whether the directory holds no page yet
local function ids_bound_of(root, id)
  local dir = ids_dir(root)
  local r, bad = ids_read('zset', 'ZREVRANGEBYLEX', dir, '[' .. id, '-', 'LIMIT', '0', '1')
  if bad then return nil, nil, bad end
  if r[1] then return r[1], false end
  return '', true
end

-- the look at page before adding id to it: card (its ZCARD, or nil when not read), there
-- (the id is on it), and a refusal (the page is not a zset). absent: the object is not
-- stored, so its id is most likely not listed: the page's ZCARD is the type check (the
-- add's ZADD reply says whether it was there), and none when known (the page was read in
-- this call and only its own adds wrote it since); else its ZSCORE of id
local function ids_add_check(page, id, absent, known)
  if absent then
    if known then return nil, false end
    local card, bad = ids_read('zset', 'ZCARD', page)
    return card, false, bad
  end
  local s, bad = ids_read('zset', 'ZSCORE', page, id)
  return nil, s ~= nil and s ~= false, bad
end

-- the plan of adding id (nil: nothing to write, it is there), or nil and a refusal.
-- absent (optional): the object is not stored, so its id is most likely not listed: the
-- page's ZCARD (read anyway, and the page's type check) stands for its ZSCORE, and the
-- plan is 'maybe': ids_apply_pages counts the id only if its ZADD added it (a split reads
-- the page's members, which say it)
local function ids_plan_add(root, d, id, typed, absent)
  local bound, fresh, bad = ids_bound_of(root, id)
  if bad then return nil, bad end
  local page = ids_page(root, d, bound)
  local card, there
  card, there, bad = ids_add_check(page, id, absent, false)
  if bad then return nil, bad end
  if there then return nil end
  bad = ids_check_count(root, typed)
  if bad then return nil, bad end
  local plan = {op = 'add', root = root, d = d, id = id, page = page, bound = bound,
                fresh = fresh, maybe = absent}
  card = card or redis.call('ZCARD', page)
  -- (a page of more than twice IDS_MAX ids was written by hand: the id goes in without a
  -- split, which would move thousands of ids in one call; verify reports the page and
  -- reindex cuts it, a bounded step at a time: ids_mend)
  if card >= IDS_MAX and card <= 2 * IDS_MAX then
    -- the split: the upper half of the page with the id moves to a new page, whose key
    -- must be free (checked here, before any write)
    local members = redis.call('ZRANGE', page, '0', '-1')
    local all, placed = {}, false
    for _, m in ipairs(members) do
      if m == id then return nil end  -- there already (absent: not asked before)
      if not placed and ids_before(id, m) then all[#all + 1] = id; placed = true end
      all[#all + 1] = m
    end
    if not placed then all[#all + 1] = id end
    -- in two halves; but an id past every member (ids saved in increasing order, the
    -- common case) starts a page of its own, so that the pages such saves leave are full
    local half = math.floor(#all / 2)
    if not placed then half = #all - 1 end
    local upper = {}
    for i = half + 1, #all do upper[#upper + 1] = all[i] end
    local target = ids_page(root, d, upper[1])
    local t = redis.call('TYPE', target)['ok']
    if t ~= 'none' then return nil, {'WRONGTYPE', target, t, 'none'} end
    plan.upper, plan.target = upper, target
  end
  return plan
end

-- the plan of removing id (nil: nothing to write, it is not there), or nil and a refusal
local function ids_plan_remove(root, d, id, typed)
  local bound, _, bad = ids_bound_of(root, id)
  if bad then return nil, bad end
  local page = ids_page(root, d, bound)
  local s
  s, bad = ids_read('zset', 'ZSCORE', page, id)
  if bad then return nil, bad end
  if not s then return nil end
  bad = ids_check_count(root, typed)
  if bad then return nil, bad end
  local plan = {op = 'remove', root = root, d = d, id = id, page = page, bound = bound}
  if bound ~= '' then
    local left = redis.call('ZCARD', page) - 1
    if left < IDS_MERGE then
      local prev = redis.call('ZREVRANGEBYLEX', ids_dir(root), '(' .. bound, '-', 'LIMIT', '0', '1')[1]
      if prev then
        local pkey = ids_page(root, d, prev)
        local pn
        pn, bad = ids_read('zset', 'ZCARD', pkey)
        if bad then return nil, bad end
        if left == 0 or pn + left <= IDS_JOINED then plan.into = pkey end
      end
    end
  end
  return plan
end

-- ids_plan_add for the adds of one call, one after another (index_write_many.lua): near is
-- the call's memory of the page its last add planned (a table, empty at first, kept by
-- ids_noted after each write of the call's pages). The second add in a row to one page
-- learns where the page ends (its next bound); from then on an id that falls in it is
-- planned without the directory lookup and its ZCARD (ids saved in increasing order: 2
-- commands fewer per id). The page's ZSCORE is still read (whether the id is there, and
-- the page's type); a page that would pass IDS_MAX is planned by ids_plan_add (a split).
-- Only the call's own writes change pages meanwhile, and any write but such an add
-- (a split, a new directory, a removal) makes ids_noted forget the page.
local function ids_plan_add_near(root, d, id, typed, near, absent)
  local bound, known
  if near.root == root and near.nxt ~= nil and not ids_before(id, near.bound)
      and (near.nxt == false or ids_before(id, near.nxt)) then
    bound, known = near.bound, true
  else
    local fresh, bad
    bound, fresh, bad = ids_bound_of(root, id)
    if bad then return nil, bad end
    if fresh then near.root = nil; return ids_plan_add(root, d, id, typed, absent) end
    known = near.root == root and near.bound == bound
  end
  local page = ids_page(root, d, bound)
  local card, there, bad = ids_add_check(page, id, absent, known)
  if bad then return nil, bad end
  if there then return nil end
  if known then card = near.card end
  bad = ids_check_count(root, typed)
  if bad then return nil, bad end
  card = card or redis.call('ZCARD', page)
  if card >= IDS_MAX then near.root = nil; return ids_plan_add(root, d, id, typed, absent) end
  if known and near.nxt == nil then  -- a second add in a row here: where the page ends
    near.nxt = redis.call('ZRANGE', ids_dir(root), '(' .. bound, '+', 'BYLEX',
                          'LIMIT', '0', '1')[1] or false
  elseif not known then
    near.root, near.bound, near.nxt = root, bound, nil
  end
  near.card = card
  return {op = 'add', root = root, d = d, id = id, page = page, bound = bound, fresh = false,
          near = near, maybe = absent}
end

-- ids_plan_remove for the removals of one call, one after another (index_write_many.lua,
-- delete_many): gone is the call's memory of the page its last removal planned (a table,
-- empty at first, kept by ids_gone after each write of the call's pages), as near is for
-- adds: from the second removal in a row from one page on, an id in it is planned without
-- the directory lookup and its ZCARD. A removal that would leave the page small enough to
-- join the previous one is planned by ids_plan_remove (a join).
local function ids_plan_remove_near(root, d, id, typed, gone)
  local bound, known
  if gone.root == root and gone.nxt ~= nil and not ids_before(id, gone.bound)
      and (gone.nxt == false or ids_before(id, gone.nxt)) then
    bound, known = gone.bound, true
  else
    local bad, fresh
    bound, fresh, bad = ids_bound_of(root, id)
    if bad then return nil, bad end
    if fresh then return nil end  -- no directory: no id
    known = gone.root == root and gone.bound == bound
  end
  local page = ids_page(root, d, bound)
  local s, bad = ids_read('zset', 'ZSCORE', page, id)
  if bad then return nil, bad end
  if not s then return nil end
  bad = ids_check_count(root, typed)
  if bad then return nil, bad end
  local card
  if known then card = gone.card else card = redis.call('ZCARD', page) end
  if bound ~= '' and card - 1 < IDS_MERGE then
    gone.root = nil
    return ids_plan_remove(root, d, id, typed)
  end
  if known and gone.nxt == nil then  -- a second removal in a row here: where it ends
    gone.nxt = redis.call('ZRANGE', ids_dir(root), '(' .. bound, '+', 'BYLEX',
                          'LIMIT', '0', '1')[1] or false
  elseif not known then
    gone.root, gone.bound, gone.nxt = root, bound, nil
  end
  gone.card = card
  return {op = 'remove', root = root, d = d, id = id, page = page, bound = bound,
          near = gone}
end

-- after a plan of the call was written (nil: nothing written): near (adds) and gone
-- (removals, optional) follow the page; any other write of the pages makes them forget it
local function ids_noted(plan, near, gone)
  if not plan then return end
  if plan.near == near then near.card = near.card + plan.delta else near.root = nil end
  if gone then
    if plan.near == gone then gone.card = gone.card - 1 else gone.root = nil end
  end
end

-- ZADD key 0 m for each member (in slices: unpack has a limit)
local function ids_zadd(key, members)
  local args = {}
  for _, m in ipairs(members) do
    args[#args + 1] = 0
    args[#args + 1] = m
  end
  for i = 1, #args, 2000 do redis.call('ZADD', key, unpack(args, i, math.min(i + 1999, #args))) end
end

-- ZREM key m for each member (in slices, as ids_zadd: a page planted with thousands of ids
-- moves thousands at a split)
local function ids_zrem(key, members)
  for i = 1, #members, 1000 do
    redis.call('ZREM', key, unpack(members, i, math.min(i + 999, #members)))
  end
end

-- writes a plan of ids_plan_add / ids_plan_remove but its count (nil: nothing); answers
-- the change of the count (+1, -1; 0 for nil)
local function ids_apply_pages(plan)
  if not plan then return 0 end
  local dir = ids_dir(plan.root)
  if plan.op == 'add' then
    if plan.fresh then redis.call('ZADD', dir, '0', '') end
    if plan.upper then
      local moved = {}
      for _, m in ipairs(plan.upper) do if m ~= plan.id then moved[#moved + 1] = m end end
      if #moved > 0 then ids_zrem(plan.page, moved) end
      local stays = true
      for _, m in ipairs(plan.upper) do if m == plan.id then stays = false end end
      if stays then redis.call('ZADD', plan.page, '0', plan.id) end
      ids_zadd(plan.target, plan.upper)
      redis.call('ZADD', dir, '0', plan.upper[1])
    elseif redis.call('ZADD', plan.page, '0', plan.id) == 0 then
      plan.delta = 0  -- a maybe plan's id was there: nothing changed, nothing counted
      return 0
    end
    plan.delta = 1
    return 1
  end
  redis.call('ZREM', plan.page, plan.id)
  if plan.into then
    local rest = redis.call('ZRANGE', plan.page, '0', '-1')
    if #rest > 0 then
      ids_zadd(plan.into, rest)
      redis.call('DEL', plan.page)
    end
    redis.call('ZREM', dir, plan.bound)
  end
  return -1
end

-- after the count of root changed to n: at 0 (the last id removed) the directory (holding
-- only the first page's bound, that page empty and so gone) and the count are deleted, so
-- a bucket whose objects are all deleted leaves no key behind; a count at 0 while pages
-- still hold ids (a count drifted or planted) deletes nothing
local function ids_settle(root, d, n)
  if n ~= 0 then return end
  local dir = ids_dir(root)
  if redis.call('ZCARD', dir) <= 1 and redis.call('EXISTS', ids_page(root, d, '')) == 0 then
    redis.call('DEL', dir, ids_count_key(root))
  end
end

-- writes a plan of ids_plan_add / ids_plan_remove (nil: nothing)
local function ids_apply(plan)
  local delta = ids_apply_pages(plan)
  if delta ~= 0 then
    ids_settle(plan.root, plan.d, redis.call('INCRBY', ids_count_key(plan.root), delta))
  end
end

-- writes a plan as ids_apply does, but adds the count's change to deltas (count key ->
-- change) instead of writing it: ids_flush writes them, one INCRBY per count, when the
-- call's last plan is written (a call of many writes changes its count once). The plans
-- do not read the count's value (only check its key), so a later plan of the same call
-- is the same either way.
local function ids_apply_later(plan, deltas)
  local delta = ids_apply_pages(plan)
  if delta ~= 0 then
    local cnt = ids_count_key(plan.root)
    local had = deltas[cnt]
    if had then had[1] = had[1] + delta else deltas[cnt] = {delta, plan.root, plan.d} end
  end
end

local function ids_flush(deltas)
  for cnt, had in pairs(deltas) do
    if had[1] ~= 0 then ids_settle(had[2], had[3], redis.call('INCRBY', cnt, had[1])) end
  end
end

-- ---- reads ------------------------------------------------------------------------------
-- the count of every id (absent: 0), or nil and a refusal
local function ids_count(root)
  local v, bad = ids_read('string', 'GET', ids_count_key(root))
  if bad then return nil, bad end
  if not v then return 0 end
  local n = tonumber(v)
  if not n or not ids_count_ok(v) then
    return nil, {'WRONGTYPE', ids_count_key(root), 'string', 'count'}
  end
  return n
end

-- whether id is among the ids, or nil and a refusal
local function ids_has(root, d, id)
  local bound, _, bad = ids_bound_of(root, id)
  if bad then return nil, bad end
  local s
  s, bad = ids_read('zset', 'ZSCORE', ids_page(root, d, bound), id)
  if bad then return nil, bad end
  return s ~= false
end

-- up to n ids after c ('' from the start), in id order; whether the ids end there (false
-- when exactly n were found: the next call finds the end); and the reads it cost (members
-- read plus pages visited: every page visited but the first two gives at least one id, so
-- this is at most n + 2 pages), or nil and a refusal
-- (The bounds of the next pages are read from the directory several at a time, as many
-- as the ids still wanted need when the pages are full, plus one: about one command per
-- page rather than two; a page visited still counts one read, its bound included, and
-- the bounds read ahead and not visited are at most that plus one per call.)
local function ids_after(root, d, c, n)
  local out, reads = {}, 1
  local bound, _, bad = ids_bound_of(root, c)
  if bad then return nil, nil, nil, bad end
  local dir = ids_dir(root)
  local ahead, at = {}, 1
  while true do
    local start = c == '' and '-' or '(' .. c
    local got
    got, bad = ids_read('zset', 'ZRANGE', ids_page(root, d, bound), start, '+', 'BYLEX',
                        'LIMIT', '0', n - #out)
    if bad then return nil, nil, nil, bad end
    for _, id in ipairs(got) do out[#out + 1] = id end
    reads = reads + 1 + #got
    if #out >= n then return out, false, reads end
    if at > #ahead then
      local k = math.min(math.ceil((n - #out) / IDS_MAX) + 1, 256)
      ahead = redis.call('ZRANGE', dir, '(' .. bound, '+', 'BYLEX', 'LIMIT', '0', k)
      at = 1
    end
    local nxt = ahead[at]
    at = at + 1
    if not nxt then return out, true, reads end
    bound = nxt
  end
end

-- ---- repair (ids_convert.lua 'check' / 'mend': verify and reindex) -------------------------
local IDS_PIECE = 48  -- the size of the pages an oversized page is cut into

-- One bounded step over the pages of a bucket, checking them (fix false: verify, no write)
-- or mending them (fix true: reindex), from the directory bound start on ('-' the first;
-- '[' .. b or '(' .. b as ZRANGE BYLEX takes them), reading about budget members at most
-- (a page visited counts one; a mend counts what it moves). The damage looked for (each
-- is only ever written outside redmodel):
--   score    members of the directory or a page whose score is not 0 (the byte order of
--            the ids needs every score 0): mend sets them to 0
--   nofirst  a directory without the first page's bound '' (or none, while the page of ''
--            exists): mend adds it
--   nopage   a bound (not '') whose page does not exist: mend removes the bound (its range
--            joins the page before, which holds what the range held)
--   outside  ids of a page outside its bounds (below its bound, at or past the next page's
--            bound: an id misplaced, or in two pages): mend moves each to the page it
--            belongs in (ids_plan_add; one already there is removed, and the count with it)
--            (n: up to budget of them)
--   size     a page holding more than IDS_MAX ids: mend cuts its top into pages of
--            IDS_PIECE ids (a new page's key must be free: a planted key refuses)
-- Bounds are judged against the pages that exist: the next bound of a page is the next one
-- whose page exists. Answers {'STEP', done (1 | 0), the next start (when not done), then
-- per damage found: kind, key, n, sample}, or a refusal {'WRONGTYPE', key, type, expected}.
local function ids_mend(root, d, fix, start, budget)
  if type(start) ~= 'string' or start == '' or not budget or budget < 1 then
    return {'BADARG', 'step'}
  end
  local dir, cnt = ids_dir(root), ids_count_key(root)
  local out = {'STEP', 1, ''}
  local function found(kind, key, n, sample)
    out[#out + 1] = kind
    out[#out + 1] = key
    out[#out + 1] = n
    out[#out + 1] = sample or ''
  end
  local function later(at)
    out[2], out[3] = 0, at
    return out
  end
  -- the members of key whose score is not 0 (up to budget)
  local function scored(key)
    local odd = redis.call('ZRANGE', key, '(0', '+inf', 'BYSCORE', 'LIMIT', '0', budget)
    for _, m in ipairs(redis.call('ZRANGE', key, '-inf', '(0', 'BYSCORE', 'LIMIT', '0', budget)) do
      odd[#odd + 1] = m
    end
    return odd
  end
  local used = 0
  if start == '-' then
    local odd = scored(dir)
    if #odd > 0 then
      found('score', dir, #odd, odd[1])
      if fix then
        for _, m in ipairs(odd) do redis.call('ZADD', dir, '0', m) end
        if #odd >= budget then return later('-') end
      end
    end
    -- (the first page exists without its bound: every lookup reads it all the same, as
    -- the page of '' when the directory is empty, so it is listed, not dropped)
    local first = redis.call('ZRANGE', dir, 0, 0)[1]
    if first ~= '' and (first or redis.call('EXISTS', ids_page(root, d, '')) == 1) then
      found('nofirst', dir, 0, first or '')
      if fix then redis.call('ZADD', dir, '0', '') end
    end
  end
  local function exists(b)
    return b == '' or redis.call('EXISTS', ids_page(root, d, b)) == 1
  end
  local K = math.max(1, math.min(64, budget))
  local function window()
    local bounds = redis.call('ZRANGE', dir, start, '+', 'BYLEX', 'LIMIT', '0', K)
    local live = {}
    for _, b in ipairs(bounds) do
      if exists(b) then
        live[#live + 1] = b
      else
        found('nopage', dir, 0, b)
        if fix then redis.call('ZREM', dir, b) end
      end
    end
    return bounds, live
  end
  local bounds, live = window()
  if fix and #live < #bounds then bounds, live = window() end  -- the removed ones' places
  -- the first bound after the window whose page exists (nil: the window reaches the end)
  local after
  if #bounds == K then
    local at = bounds[#bounds]
    for _ = 1, 1000 do
      after = redis.call('ZRANGE', dir, '(' .. at, '+', 'BYLEX', 'LIMIT', '0', '1')[1]
      if not after or exists(after) then break end
      if fix then found('nopage', dir, 0, after); redis.call('ZREM', dir, after) end
      at = after
    end
  end
  local typed = {}
  for i, b in ipairs(live) do
    if used >= budget then return later('[' .. b) end
    local nxt = live[i + 1] or after
    local page = ids_page(root, d, b)
    local card, bad = ids_read('zset', 'ZCARD', page)
    if bad then return bad end
    used = used + 1
    local odd = scored(page)
    used = used + #odd
    if #odd > 0 then
      found('score', page, #odd, odd[1])
      if fix then
        for _, m in ipairs(odd) do redis.call('ZADD', page, '0', m) end
        if #odd >= budget then return later('[' .. b) end
      end
    end
    -- the ids below the page's bound, then those at or past the next one (up to budget;
    -- read, not counted by ZLEXCOUNT: the documented ACL does not grant it)
    local strays, more = {}, false
    if b ~= '' then
      strays = redis.call('ZRANGE', page, '-', '(' .. b, 'BYLEX', 'LIMIT', '0', budget)
      more = #strays >= budget
    end
    if nxt and not more then
      for _, x in ipairs(redis.call('ZRANGE', page, '[' .. nxt, '+', 'BYLEX', 'LIMIT', 0,
                                    budget - #strays)) do
        strays[#strays + 1] = x
      end
      more = #strays >= budget
    end
    if not fix then used = used + #strays end
    if #strays > 0 then
      found('outside', page, #strays, strays[1])
      if fix then
        for _, x in ipairs(strays) do
          -- x is outside this page's bounds, so its plan never reads or changes this page
          local plan
          plan, bad = ids_plan_add(root, d, x, typed)
          if bad then return bad end
          redis.call('ZREM', page, x)
          if plan then
            ids_apply_pages(plan)
            if plan.upper then used = used + #plan.upper end
          else
            redis.call('INCRBY', cnt, -1)  -- a second copy: one id fewer counted
          end
          used = used + 4
        end
        if more then return later('[' .. b) end
        card = redis.call('ZCARD', page)
        if card == 0 and b ~= '' then redis.call('ZREM', dir, b) end
      end
    end
    if card > IDS_MAX then
      found('size', page, card)
      if fix then
        while card > IDS_MAX do
          if used >= budget then return later('[' .. b) end
          local top = redis.call('ZRANGE', page, -IDS_PIECE, -1)
          local target = ids_page(root, d, top[1])
          local t = redis.call('TYPE', target)['ok']
          if t ~= 'none' then return {'WRONGTYPE', target, t, 'none'} end
          ids_zadd(target, top)
          ids_zrem(page, top)
          redis.call('ZADD', dir, '0', top[1])
          card = card - #top
          used = used + #top
        end
      end
    end
  end
  if #bounds == K then return later('(' .. bounds[#bounds]) end
  return out
end
