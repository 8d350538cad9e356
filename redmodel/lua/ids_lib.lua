--! include ids_core
-- The all-ids pages (ids_core.lua: the format, the writes' plans) and their reads and
-- repair, for the scripts that read or mend them (query, ids_read, ids_convert). Apart from
-- ids_core.lua because a script's body runs whole on every call: a write script that
-- included these would define them each time, and never call them.
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
                        'LIMIT', 0, n - #out)
    if bad then return nil, nil, nil, bad end
    for _, id in ipairs(got) do out[#out + 1] = id end
    reads = reads + 1 + #got
    if #out >= n then return out, false, reads end
    if at > #ahead then
      local k = math.min(math.ceil((n - #out) / IDS_MAX) + 1, 256)
      ahead = redis.call('ZRANGE', dir, '(' .. bound, '+', 'BYLEX', 'LIMIT', 0, k)
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
    local odd = redis.call('ZRANGE', key, '(0', '+inf', 'BYSCORE', 'LIMIT', 0, budget)
    for _, m in ipairs(redis.call('ZRANGE', key, '-inf', '(0', 'BYSCORE', 'LIMIT', 0, budget)) do
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
        for _, m in ipairs(odd) do redis.call('ZADD', dir, 0, m) end
        if #odd >= budget then return later('-') end
      end
    end
    -- (the first page exists without its bound: every lookup reads it all the same, as
    -- the page of '' when the directory is empty, so it is listed, not dropped)
    local first = redis.call('ZRANGE', dir, 0, 0)[1]
    if first ~= '' and (first or redis.call('EXISTS', ids_page(root, d, '')) == 1) then
      found('nofirst', dir, 0, first or '')
      if fix then redis.call('ZADD', dir, 0, '') end
    end
  end
  local function exists(b)
    return b == '' or redis.call('EXISTS', ids_page(root, d, b)) == 1
  end
  local K = math.max(1, math.min(64, budget))
  local function window()
    local bounds = redis.call('ZRANGE', dir, start, '+', 'BYLEX', 'LIMIT', 0, K)
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
      after = redis.call('ZRANGE', dir, '(' .. at, '+', 'BYLEX', 'LIMIT', 0, 1)[1]
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
        for _, m in ipairs(odd) do redis.call('ZADD', page, 0, m) end
        if #odd >= budget then return later('[' .. b) end
      end
    end
    -- the ids below the page's bound, then those at or past the next one (up to budget;
    -- read, not counted by ZLEXCOUNT: the documented ACL does not grant it)
    local strays, more = {}, false
    if b ~= '' then
      strays = redis.call('ZRANGE', page, '-', '(' .. b, 'BYLEX', 'LIMIT', 0, budget)
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
          redis.call('ZADD', dir, 0, top[1])
          card = card - #top
          used = used + #top
        end
      end
    end
  end
  if #bounds == K then return later('(' .. bounds[#bounds]) end
  return out
end
