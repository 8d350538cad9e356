--! include clock
-- One bounded step of a query in one bucket: it does about `budget` work (members read and
-- looked up) and answers what it found plus where to go on (redmodel/_query.py drives
-- the steps).
--
-- KEYS: rec, all, exp, ids, idn, then every index key the expression and the sort use,
--   then (when ARGV[1] names it) the model's registry hash. The all-ids index is the pages
--   of ids_lib.lua (directory `ids`, count `idn`; the page keys under the same root are
--   the one amendment of "every key in KEYS": docs/design.md). `all` is read only by its
--   TYPE: present, it is the all-ids index of an older version not converted yet.
-- ARGV: registry check (the registry's index in KEYS, or '' for none), then either the
--   record's version the client read and '' (the record has a `version` field:
--   redmodel/_indexes/_registry.py), or, for a record written before versions, marker (the
--   `was:<digest>` field that appears once the schema the client read is replaced) and
--   expected (state field, value read ('' for absent), field, value... joined by
--   newlines), mode ('page' | 'count'
--   | 'count1': a count of one term, whose ARGV end with its term: see below),
--   sort (index into KEYS of the sort
--   field's ZSET, or ''), desc ('1' | '0'), want, budget, walk_lo, walk_hi (bounds on the
--   sort field), from_score, from_id (the walk resumes after this position; '' from the
--   start), step ('' to choose | 'W' | 'S'), scan node, scan source, scan a, scan b, span
--   (how many results the client will take from one scan pass: pages() keeps several
--   pages of a pass, so a scan's cost is shared by them), then the expression: EQ k | RANGE k lo hi | ALL | NOT x | AND n x... | OR n x... |
--   ORD n x... (an OR of disjoint terms: one_of on a single-valued field), where k indexes
--   KEYS.
--
-- Replies (scores are Redis' own text, never Lua's tostring, which keeps 14 digits):
--   {'R'}: the registry record is not what the client read (an index state changed, the
--     schema was replaced, a bucket move began; a record that is gone records nothing and
--     is no change): nothing was read; the
--     client reads the record again (IndexNotReadyError when an index it needs is not
--     ready) and asks again.
--   {'W', done, frontier score, frontier id, id, score, ...}: matches in result order;
--     `done` once the walk reached its end; the frontier is the last candidate examined.
--   {'S', done, node, source, a, b, id, score, ...}: matches of one part of a scan, in no
--     order, an id perhaps more than once (SSCAN repeats, several sources of an OR): the
--     client keeps the best of them, each id once (one pass per page).
--   {'N', count}: a count Redis answered natively; {'C', done, 'W', s, c, count} or
--     {'C', done, 'S', node, source, a, b, count, id...}: part of one (a scan's `count`
--     holds the matches from sources that never repeat a member; the ids are matches
--     read with SSCAN, or of one of several sources of an OR, which may repeat one: the
--     client counts each id once).
--   {'X'}: an expired object's entries are still indexed: sweep the bucket, then ask again.
--   {'U', key, type}: `all` (the key) exists, a ZSET or a SET: the all-ids index of an
--     older version, not converted to pages yet (store.reindex converts it); nothing read.
--   {'WRONGTYPE', key, type, expected}: a key this step read holds another type
--     (overwritten outside redmodel): found where it is read (a term's key is not
--     type-checked by every step), so the step answers only that; nothing is written.

-- a key that refused a command (`res`, the error pcall answered): WRONGTYPE is the clear
-- error naming it (rather than a script error); any other error (NOPERM, ...) is answered
-- as it is, naming the command (cmd, when given) where its text does not: Redis 7.0's
-- ACL refusal inside a script names none, and a pcall's error carries no script line the
-- client could map back to one (Valkey's names it: 'zrange')
local function refused(key, want, res, cmd)
  if res and not string.find(res['err'] or '', 'WRONGTYPE', 1, true) then
    local name = cmd and ("'" .. string.lower(cmd) .. "'")
    if name and not string.find(res['err'] or '', name, 1, true) then
      return {err = (res['err'] or '') .. ' (the refused command is ' .. name ..
        ' on the key \'' .. key .. '\')'}
    end
    return res
  end
  return {'WRONGTYPE', key, redis.call('TYPE', key)['ok'], want}
end

-- the registry first: every index state this query needs is what the client read, in
-- this same call (so no state change by another process can fall between the check and
-- the read). A record with a version: that one field is what the client read (every
-- write that changes a state, the schema or `moving` gives it a new version); a record
-- written before versions: each field. HGET per field (the ACL rule of indexes and
-- queries grants HGET, docs/deploy.md)
if ARGV[1] ~= '' and string.sub(ARGV[2], 1, 4) ~= 'was:' then
  local reg = KEYS[tonumber(ARGV[1])]
  local version = redis.pcall('HGET', reg, 'version')
  if type(version) == 'table' then return refused(reg, 'hash', version) end
  -- no version: the record is gone (no state: the client's view holds), or written again
  -- without one (by an earlier version of redmodel): read again
  if version ~= ARGV[2] and (version or redis.call('HGET', reg, 'owner')) then
    return {'R'}
  end
elseif ARGV[1] ~= '' then
  local reg = KEYS[tonumber(ARGV[1])]
  local owner = redis.pcall('HGET', reg, 'owner')
  if type(owner) == 'table' then return refused(reg, 'hash', owner) end
  -- no record (deleted: unregister, FLUSHALL) records no state: the client's view holds
  if owner then
    if redis.call('HGET', reg, 'moving') or redis.call('HGET', reg, ARGV[2]) then
      return {'R'}
    end
    for name, value in string.gmatch(ARGV[3] .. '\n', '([^\n]*)\n([^\n]*)\n') do
      if (redis.call('HGET', reg, name) or '') ~= value then return {'R'} end
    end
  end
end

-- a count of one term, which Redis counts natively (the most common count): mode
-- 'count1', whose ARGV end there (ARGV[5..]: EQ k | RANGE k lo hi | ALL), answered before
-- anything else is set up
-- the all-ids index is the pages: an old `all` still there is refused (one TYPE)
local function unconverted()
  local t = redis.call('TYPE', KEYS[2])['ok']
  if t == 'none' then return nil end
  if t == 'zset' or t == 'set' then return {'U', KEYS[2], t} end
  return {'WRONGTYPE', KEYS[2], t, 'zset'}
end
-- what a one-term count answers before counting: an unconverted `all`, a wrong-typed
-- `exp`, an expired object still indexed ({'X'}); nil when it may count
local function count1_refused()
  local bad = unconverted()
  if bad then return bad end
  local due = redis.pcall('ZCARD', KEYS[3])
  if type(due) ~= 'number' then return refused(KEYS[3], 'zset', due) end
  if due > 0 and #redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', time_ms(), 'LIMIT', 0, 1) > 0
  then
    return {'X'}
  end
  return nil
end

if ARGV[4] == 'count1' and ARGV[5] ~= 'ALL' then
  local n
  local bad = count1_refused()
  if bad then return bad end
  local op = ARGV[5]
  if op == 'EQ' then
    local key = KEYS[tonumber(ARGV[6])]
    n = redis.pcall('SCARD', key)
    if type(n) ~= 'number' then return refused(key, 'set', n, 'SCARD') end
  elseif op == 'RANGE' then
    local key = KEYS[tonumber(ARGV[6])]
    n = redis.pcall('ZCOUNT', key, ARGV[7], ARGV[8])
    if type(n) ~= 'number' then return refused(key, 'zset', n, 'ZCOUNT') end
  end
  return {'N', n}
end

-- the all-ids pages' functions, included here rather than at the top: Lua makes a
-- script's functions anew at every call, and a count of an index needs none of them
-- (~1.6 us of the count's ~7 us of server time, INFO commandstats, Redis 7.0.15)
--! include ids_lib

-- the bucket's index root (`rec` is root .. 'rec') and the delimiter (the root is
-- prefix .. '%idx' .. delimiter, and a delimiter holds no '%')
local root = string.sub(KEYS[1], 1, -4)
local dlm = string.match(root, '%%idx([^%%]*)$')

if ARGV[4] == 'count1' then  -- of every id: the pages' count
  local bad = count1_refused()
  if bad then return bad end
  local n
  n, bad = ids_count(root)
  if bad then return bad end
  return {'N', n}
end

local exp = KEYS[3]
local mode, desc = ARGV[4], ARGV[6] == '1'
local sortkey = ARGV[5] ~= '' and KEYS[tonumber(ARGV[5])] or nil
local want, budget = tonumber(ARGV[7]), tonumber(ARGV[8])
if want < 0 then want = math.huge end
local walk_lo, walk_hi = ARGV[9], ARGV[10]
local from_score, from_id = ARGV[11], ARGV[12]
local step = ARGV[13]
local scan_node, scan_src, scan_a, scan_b = tonumber(ARGV[14]), tonumber(ARGV[15]),
  ARGV[16], ARGV[17]
local per_pass = math.max(tonumber(ARGV[18]) or 0, want)

-- every key this step may read holds its type, or the step answers which does not (a
-- clear error naming it, rather than a script error)
local function wrong(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'WRONGTYPE', key, t, want} end
  return nil
end
local bad = unconverted() or wrong(exp, 'zset')
if bad then return bad end

-- expired objects never appear: while one is due, answer only that, and the client runs
-- the sweep (whose keys it names from the records) before asking again
if #redis.call('ZRANGEBYSCORE', exp, '-inf', time_ms(), 'LIMIT', 0, 1) > 0 then
  return {'X'}
end

-- work done by this call, in units (a member read from an index or looked up in one):
-- no call does much more than `budget` of it. What else grows with the query is counted
-- too, so that a query of many terms does fewer members per step rather than a longer
-- step: each term parsed from ARGV (with its share of KEYS and ARGV, which the server
-- builds for every call) costs PARSE, each command sent to an index key costs CALL on
-- top of its members (Redis 7.0.15: ~0.3 us a member looked up in a batch, ~1 us a
-- command from a script, ~0.5 us a term parsed; benchmarks/bench_steps.py)
local work = 0
local CALL, PARSE = 3, 2
-- a command on an index key, counted; a key of the wrong type (overwritten outside
-- redmodel) ends the step with the refusal naming it (raised to the pcall around the
-- step below): checked where read, not by a TYPE of every key at every step
local function rcall(want, cmd, key, ...)
  work = work + CALL
  local res = redis.pcall(cmd, key, ...)
  if type(res) == 'table' and res['err'] then
    error({refusal = refused(key, want, res, cmd)})
  end
  return res
end

-- ---- the expression ------------------------------------------------------------------
local bypos = {}
local function bound(text)
  if text == '-inf' then return -math.huge, true end
  if text == '+inf' then return math.huge, true end
  if string.sub(text, 1, 1) == '(' then return tonumber(string.sub(text, 2)), false end
  return tonumber(text), true
end
local function parse(i)
  local op, node, j = ARGV[i], nil, nil
  if op == 'EQ' then
    node, j = {op = op, key = KEYS[tonumber(ARGV[i + 1])]}, i + 2
  elseif op == 'RANGE' then
    node = {op = op, key = KEYS[tonumber(ARGV[i + 1])], lo = ARGV[i + 2], hi = ARGV[i + 3]}
    node.l, node.li = bound(node.lo)
    node.h, node.hi_in = bound(node.hi)
    j = i + 4
  elseif op == 'ALL' then
    node, j = {op = op}, i + 1
  elseif op == 'NOT' then
    local kid
    kid, j = parse(i + 1)
    node = {op = op, kids = {kid}}
  else
    node, j = {op = op, kids = {}}, i + 2
    for k = 1, tonumber(ARGV[i + 1]) do node.kids[k], j = parse(j) end
  end
  node.pos = i
  bypos[i] = node
  work = work + PARSE
  return node, j
end
local expr = parse(19)

local function within(score, l, li, h, hi_in)
  if not score then return false end
  if li then if score < l then return false end elseif score <= l then return false end
  if hi_in then if score > h then return false end elseif score >= h then return false end
  return true
end

-- (upper bound, estimate) of the number of matches, from native O(1) / O(log n) counts
local N
N, bad = ids_count(root)
if bad then return bad end
local function size(node)
  if node.up then return node.up, node.est end
  local op, up, est = node.op, 0, 0
  if op == 'EQ' then up = rcall('set', 'SCARD', node.key); est = up
  elseif op == 'RANGE' then up = rcall('zset', 'ZCOUNT', node.key, node.lo, node.hi); est = up
  elseif op == 'ALL' then up = N; est = N
  elseif op == 'NOT' then
    local _, e = size(node.kids[1])
    up = N; est = math.max(N - e, 0)
  elseif op == 'AND' then
    up = N
    local p = 1
    for _, kid in ipairs(node.kids) do
      local u, e = size(kid)
      up = math.min(up, u)
      p = p * (N > 0 and e / N or 0)
    end
    est = math.min(up, N * p)
  else
    local q = 1
    for _, kid in ipairs(node.kids) do
      local u, e = size(kid)
      up = up + u
      q = q * (1 - (N > 0 and e / N or 0))
    end
    up = math.min(up, N); est = math.min(up, N * (1 - q))
  end
  node.up, node.est = up, est
  return up, est
end

-- a command over many members, sent in slices (unpack has a limit)
local function many(cmd, key, ids)
  local want = cmd == 'SMISMEMBER' and 'set' or 'zset'
  work = work + #ids
  if #ids <= 2000 then return rcall(want, cmd, key, unpack(ids)) end
  local out = {}
  for i = 1, #ids, 2000 do
    local part = rcall(want, cmd, key, unpack(ids, i, math.min(i + 1999, #ids)))
    for _, v in ipairs(part) do out[#out + 1] = v end
  end
  return out
end
local function pick(ids, idx)
  if #idx == #ids then return ids end  -- idx is always ascending: every id
  local sub = {}
  for k = 1, #idx do sub[k] = ids[idx[k]] end
  return sub
end
-- a node's kids by estimate, sorted once per step (keep runs once per chunk)
local function by_est(node, known, rarest_first)
  if node.sorted and node.sorted_known == known then return node.sorted end
  local out = {}
  for _, kid in ipairs(node.kids) do
    if kid ~= known then size(kid); out[#out + 1] = kid end
  end
  table.sort(out, function(a, b)
    if rarest_first then return a.est < b.est end
    return a.est > b.est
  end)
  node.sorted, node.sorted_known = out, known
  return out
end

-- the indexes (into `ids`, in the order given) of the ids in `idx` that match `node`:
-- AND passes only the survivors of its rarest term to the next; `known` is a term every
-- id is known to match
local function keep(node, ids, idx, known)
  local n, op = #idx, node.op
  if n == 0 or op == 'ALL' or node == known then return idx end
  local out, c = {}, 0
  if op == 'EQ' then
    local m = many('SMISMEMBER', node.key, pick(ids, idx))
    for k = 1, n do if m[k] == 1 then c = c + 1; out[c] = idx[k] end end
  elseif op == 'RANGE' then
    local s = many('ZMSCORE', node.key, pick(ids, idx))
    local l, li, h, hi = node.l, node.li, node.h, node.hi_in
    for k = 1, n do
      local v = s[k] and tonumber(s[k])
      if v and (li and v >= l or v > l) and (hi and v <= h or v < h) then
        c = c + 1; out[c] = idx[k]
      end
    end
  elseif op == 'AND' then
    for _, kid in ipairs(by_est(node, known, true)) do
      idx = keep(kid, ids, idx)
      if #idx == 0 then break end
    end
    return idx
  elseif op == 'NOT' then
    local hit = {}
    for _, i in ipairs(keep(node.kids[1], ids, idx)) do hit[i] = true end
    for k = 1, n do if not hit[idx[k]] then c = c + 1; out[c] = idx[k] end end
  else -- OR: each term sees only the ids no earlier term matched
    for _, kid in ipairs(node.kids) do if kid == known then return idx end end
    local hit, rest = {}, idx
    for _, kid in ipairs(by_est(node, nil, false)) do
      for _, i in ipairs(keep(kid, ids, rest)) do hit[i] = true end
      local left = {}
      for _, i in ipairs(rest) do if not hit[i] then left[#left + 1] = i end end
      rest = left
      if #rest == 0 then break end
    end
    for k = 1, n do if hit[idx[k]] then c = c + 1; out[c] = idx[k] end end
  end
  return out
end
-- lookups a candidate costs at most: one per term
-- (computed once per node and step: best_scan asks it of the whole query for each term)
local function lookups(node)
  if node.nl then return node.nl end
  local n = 0
  if node.op == 'EQ' or node.op == 'RANGE' then n = 1 end
  for _, kid in ipairs(node.kids or {}) do n = n + lookups(kid) end
  node.nl = n
  return n
end
-- candidates to read next: what the budget has left, shared with their `per` lookups
-- (a command each, and the read's own); at least one, so every step goes on
local function chunk(per)
  return math.max(1, math.floor((budget - work - CALL * (1 + per)) / (1 + per)))
end
local function every(ids)
  local idx = {}
  for j = 1, #ids do idx[j] = j end
  return idx
end

-- ---- positions in a sorted set (byte order, as Redis sorts members) --------------------
-- Lua's own string comparison follows the server's locale: never used for ids (byte
-- order is ids_lib's ids_before)
local before = ids_before
local function flip(t)
  if string.sub(t, 1, 1) == '(' then return string.sub(t, 2) end
  return '(' .. t
end
-- ranks [first, stop) of the members within [lo, hi], counted in walking order
local function span(key, lo, hi, rev)
  if rev then
    local first = hi == '+inf' and 0 or rcall('zset', 'ZCOUNT', key, flip(hi), '+inf')
    return first, rcall('zset', 'ZCOUNT', key, lo, '+inf')
  end
  local first = lo == '-inf' and 0 or rcall('zset', 'ZCOUNT', key, '-inf', flip(lo))
  return first, rcall('zset', 'ZCOUNT', key, '-inf', hi)
end
-- the rank (in walking order) of the first member after position (s, c), c there or not
-- (gone, moved): a binary search among the members scored s, O(log n) each step, one step
-- when s is no other member's score. (Not ZRANK/ZREVRANK of c when it is still at s: the
-- indexes and queries ACL rule grants neither, docs/deploy.md, and the search needs them not.)
local function rank_after(key, s, c, rev)
  local lo, hi
  if rev then
    lo, hi = rcall('zset', 'ZCOUNT', key, '(' .. s, '+inf'),
      rcall('zset', 'ZCOUNT', key, s, '+inf')
  else
    lo, hi = rcall('zset', 'ZCOUNT', key, '-inf', '(' .. s),
      rcall('zset', 'ZCOUNT', key, '-inf', s)
  end
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m
    if rev then m = rcall('zset', 'ZRANGE', key, mid, mid, 'REV')[1]
    else m = rcall('zset', 'ZRANGE', key, mid, mid)[1] end
    local past
    if rev then past = before(m, c) else past = before(c, m) end
    if past then hi = mid else lo = mid + 1 end
  end
  return lo
end
-- up to n members of `key` within [lo, hi] after (s, c), in walking order:
-- ids, scores, and whether the range ends there
local function ranked(key, lo, hi, rev, s, c, n)
  local r, stop = span(key, lo, hi, rev)
  if c ~= '' then r = math.max(r, rank_after(key, s, c, rev)) end
  n = math.min(n, stop - r)
  if n <= 0 then return {}, {}, true end
  local rows
  if rev then rows = rcall('zset', 'ZRANGE', key, r, r + n - 1, 'REV', 'WITHSCORES')
  else rows = rcall('zset', 'ZRANGE', key, r, r + n - 1, 'WITHSCORES') end
  local ids, scores = {}, {}
  for j = 1, #rows, 2 do ids[#ids + 1] = rows[j]; scores[#scores + 1] = rows[j + 1] end
  return ids, scores, r + #ids >= stop
end

-- ---- walk: candidates in result order; stops after `want` matches ---------------------
local function walk(filter, emit)
  local s, c, found = from_score, from_id, 0
  -- candidates per match expected: fetch about what the page still needs (the estimate,
  -- a native count of every term, only when it can make the chunk smaller)
  local ratio
  local per = lookups(filter) + (sortkey and 1 or 0)  -- a score comes with each id
  local first = true  -- every step examines a candidate at least (parsing may spend it all)
  while first or work < budget do
    first = false
    local n = chunk(per)
    if want < math.huge and n > want - found then
      if not ratio then
        local _, est = size(filter)
        ratio = N / math.max(est, 1)
        n = chunk(per)
      end
      local guess = math.ceil((want - found) * math.max(ratio, 1) * 1.25)
      if ratio > 1 then guess = guess + 16 end
      n = math.min(n, guess)
    end
    local ids, scores, ended
    if sortkey then
      ids, scores, ended = ranked(sortkey, walk_lo, walk_hi, desc, s, c, n)
    else
      -- the pages from the cursor (the id itself, so pages split or joined between
      -- two steps never repeat or skip an id); its reads count as work
      local reads, refusal
      ids, ended, reads, refusal = ids_after(root, dlm, c, n)
      if refusal then return nil, nil, nil, refusal end
      scores = nil
      work = work + reads - #ids
    end
    ended = ended or #ids == 0
    work = work + #ids * (sortkey and 2 or 1)
    local ok = keep(filter, ids, every(ids))
    for k = 1, #ok do
      local j = ok[k]
      found = found + 1
      emit(ids[j], scores and scores[j] or '')
      if found >= want then return j == #ids and ended, scores and scores[j] or '', ids[j] end
    end
    if #ids > 0 then s, c = scores and scores[#ids] or '', ids[#ids] end
    if ended then return true, s, c end
  end
  return false, s, c
end

-- ---- scan: one pass over the members of a term every match belongs to -----------------
-- SSCAN may return a member twice (when its set is resized meanwhile): pages drop the
-- repeat, and a count reads a set with one SMEMBERS when that is within the budget, else
-- with SSCAN, answering the matches' ids so that the client counts each once
local repeats = false  -- the members being checked came from SSCAN
local function source(node)
  return node.op == 'RANGE' or node.op == 'EQ'
end
local function scannable(node)
  if source(node) then return true end
  if node.op ~= 'OR' and node.op ~= 'ORD' then return false end
  for _, kid in ipairs(node.kids) do
    if not source(kid) then return false end
  end
  return true
end
local function sources(node)
  if node.op == 'EQ' or node.op == 'RANGE' then return {node} end
  return node.kids
end
-- the cheapest term of `top` to scan (every match is among its members), and the cost of
-- a pass in units of work: each member read, then looked up in the other terms (a term
-- with a few members beats a smaller one when the rest of the query has many more terms:
-- Q(color="red") & Q(tag=one_of(990 values)) scans the tags, not the reds)
local function best_scan(node, top)
  top = top or node
  if scannable(node) then
    return node, size(node) * (1 + math.max(0, lookups(top) - lookups(node)))
  end
  if node.op ~= 'AND' then return nil, math.huge end
  local best, cost = nil, math.huge
  for _, kid in ipairs(node.kids) do
    local b, k = best_scan(kid, top)
    if b and k < cost then best, cost = b, k end
  end
  return best, cost
end

-- a total order of members, the same in every step: the server's collation (Lua's `<`,
-- compared in C), members it ranks equal by their bytes
local function later(x, b)
  if b < x then return true end
  if x < b then return false end
  return before(b, x)
end
local function ordered(ms)
  table.sort(ms)
  local j = 1
  while j < #ms do
    local k = j
    while k < #ms and not (ms[k] < ms[k + 1]) do k = k + 1 end
    if k > j then  -- a run the collation ranks equal: by bytes
      local run = {}
      for x = j, k do run[#run + 1] = ms[x] end
      table.sort(run, before)
      for x = j, k do ms[x] = run[x - j + 1] end
    end
    j = k + 1
  end
  return ms
end
local function after_value(ms, b)
  if b == '' then return ms end
  local out = {}
  for _, x in ipairs(ms) do if later(x, b) then out[#out + 1] = x end end
  return out
end

-- a scan reads its sources one after the other, over several steps, with no snapshot: a
-- member of a later source may have been in an earlier one when that was read, or may
-- have joined it since. Each source's matches are all sent (membership of an earlier
-- source now says nothing about whether the client got the id from it) and the client
-- keeps each id once; sending one counts as a unit of work.
-- An EQ source's state: a, the SSCAN cursor ('' from the start), and b, the last member
-- checked of a set SSCAN answered whole ('' none): an intset or listpack is answered
-- whole whatever COUNT, so the step checks only the first members after b (in `later`'s
-- order) that the budget allows, and the next step reads the set again and goes on after
-- the last of them; once the set is a hash table SSCAN goes on by cursor, skipping the
-- members up to b (checked already).
local function scan(node, filter, emit, cap)
  local srcs = sources(node)
  local i, a, b, found = scan_src, scan_a, scan_b, 0
  -- the filter skips the scanned term; the sort key costs one each
  local per = math.max(0, lookups(filter) - lookups(node)) + (sortkey and 1 or 0)
  local sent = #srcs > 1 and 1 or 0  -- ids sent that the client may drop as repeats
  local full, first = false, true  -- every step reads a source at least
  while i <= #srcs and (first or work < budget) and not full and (cap < 0 or found < cap) do
    first = false
    local src, ids, ended = srcs[i], nil, false
    local n = chunk(per + sent)
    repeats = #srcs > 1
    if src.op == 'EQ' and mode == 'count' and a == '' and b == '' and size(src) <= n then
      ids, ended = rcall('set', 'SMEMBERS', src.key), true
      work = work + math.max(#ids, 1)
    elseif src.op == 'EQ' then
      local res = rcall('set', 'SSCAN', src.key, a == '' and '0' or a, 'COUNT', n)
      ids = res[2]
      work = work + math.max(#ids, 1)
      repeats = true
      if #ids > n and #ids >= rcall('set', 'SCARD', src.key) then
        -- the whole set: its members after b, as many as the budget has left (at least
        -- half a budget's worth: a set larger than the budget, once the server is
        -- configured to keep one small, then takes a few steps rather than one per member)
        ids = after_value(ids, b)
        local take = math.max(1, math.floor(math.max(budget - work, budget / 2)
                                            / math.max(1, per + sent)))
        if #ids > take then
          ids = ordered(ids)
          for k = #ids, take + 1, -1 do ids[k] = nil end
          a, b = '', ids[take]
          full = true  -- the budget is spent: the next step reads the set again
        else
          ended = true
        end
      else
        ids = after_value(ids, b)
        a = res[1]
        ended = a == '0'
      end
    else
      local scores
      ids, scores, ended = ranked(src.key, src.lo, src.hi, false, a, b, n)
      if #ids > 0 then a, b = scores[#scores], ids[#ids] end
      work = work + math.max(#ids, 1)
    end
    local ok = keep(filter, ids, every(ids), node)
    if sortkey and #ok > 0 then
      local l, li = bound(walk_lo)
      local h, hi_in = bound(walk_hi)
      local sc = many('ZMSCORE', sortkey, pick(ids, ok))
      for k = 1, #ok do
        if within(sc[k] and tonumber(sc[k]), l, li, h, hi_in) then
          found = found + 1
          work = work + sent
          emit(ids[ok[k]], sc[k])
        end
      end
    else
      for k = 1, #ok do found = found + 1; work = work + sent; emit(ids[ok[k]], '') end
    end
    if ended then i, a, b = i + 1, '', '' end
  end
  return i > #srcs, i, a, b
end

-- ---- counts --------------------------------------------------------------------------
local function native(node)
  local op = node.op
  if op == 'ALL' or op == 'EQ' or op == 'RANGE' then return (size(node)) end
  if op == 'NOT' then
    local inner = native(node.kids[1])
    if inner then return N - inner end
  elseif op == 'ORD' then
    local total = 0
    for _, kid in ipairs(node.kids) do
      local n = native(kid)
      if not n then return nil end
      total = total + n
    end
    return total
  elseif op == 'AND' then
    -- SINTERCARD reads the smallest set and looks each member up in the others: native
    -- only while that is within one step's budget, else counted in steps (a scan)
    local keys, smallest = {}, math.huge
    for _, kid in ipairs(node.kids) do
      if kid.op ~= 'EQ' then return nil end
      keys[#keys + 1] = kid.key
      smallest = math.min(smallest, (size(kid)))
    end
    if smallest * #keys > budget then return nil end
    local n = redis.pcall('SINTERCARD', #keys, unpack(keys))
    if type(n) == 'number' then return n end  -- before Redis 7.0: counted in steps
  end
  return nil
end

-- the step, with the refusal of a wrong-typed key (rcall) as its answer
local function run()
  if mode == 'count' then
    local found, seen = 0, {}
    local function tally(id)
      if repeats then seen[#seen + 1] = id else found = found + 1 end
    end
    if step == '' then
      local n = native(expr)
      if n then return {'N', n} end
    end
    local node, cost = nil, math.huge
    if step == 'S' then node = bypos[scan_node]
    elseif step == '' then node, cost = best_scan(expr) end
    if node and (step == 'S' or cost < N * (1 + lookups(expr))) then
      local done, i, a, b = scan(node, expr, tally, want)
      return {'C', done and 1 or 0, 'S', node.pos, i, a, b, found, unpack(seen)}
    end
    local done, s, c, refusal = walk(expr, tally)
    if refusal then return refusal end
    return {'C', done and 1 or 0, 'W', s, c, found}
  end

  if step == '' and expr.op ~= 'ALL' then
    -- a walk examines about want * (its length / matches) candidates per page, so about
    -- per_pass * (length / matches) for the results one scan pass serves; a scan, every member
    -- of its term, once per pass, and sends every match of the pass to the client, where
    -- each costs about three candidates examined here
    local node, cost = best_scan(expr)
    local length = N
    if sortkey then
      local first, stop = span(sortkey, walk_lo, walk_hi, false)
      length = stop - first
    end
    local _, est = size(expr)
    -- both in units of work: members read, and looked up
    local walking = math.min(length, per_pass * N / math.max(est, 1)) * (1 + lookups(expr))
    if node and cost + 3 * est < walking then
      step, scan_node, scan_src, scan_a, scan_b = 'S', node.pos, 1, '', ''
    end
  end
  local out = step == 'S' and {'S', 0, '', '', '', ''} or {'W', 0, '', ''}
  local nout = #out
  local function add(id, score)
    out[nout + 1], out[nout + 2] = id, score
    nout = nout + 2
  end
  if step == 'S' then
    local node = bypos[scan_node]
    local done, i, a, b = scan(node, expr, add, -1)
    out[2], out[3], out[4], out[5], out[6] = done and 1 or 0, node.pos, i, a, b
    return out
  end
  local done, s, c, refusal = walk(expr, add)
  if refusal then return refusal end
  out[2], out[3], out[4] = done and 1 or 0, s, c
  return out
end
local ok, res = pcall(run)
if ok then return res end
if type(res) == 'table' and res.refusal then return res.refusal end
error(res, 0)
