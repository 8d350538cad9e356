--! include clock
--! include parts_lib
--! include ids_lib
-- Index helpers shared by the write, sweep and repair scripts (see redmodel/_index.py).
-- Every script here first checks, then writes: the keys it touches must all be in KEYS
-- (else it answers {'KEYS', missing...} and writes nothing), each must hold the type it
-- expects (else {'WRONGTYPE', key, type, expected}), and only then does it write.
local SEP = '\31'
local ANY = SEP .. '*'  -- the end of a range line of any value ('r', name, '*')
local function split(line)
  return string.match(line, '^([^\31]*)\31([^\31]*)\31(.*)$')
end
-- the non-empty lines of text as a set (string.find over the text, no gmatch iterator:
-- about half the cost per line)
local function lines(text)
  local t = {}
  if not text then return t end
  local find, sub = string.find, string.sub
  local i, n = 1, #text
  while i <= n do
    local j = find(text, '\n', i, true)
    if j == nil then t[sub(text, i)] = true; break end
    if j > i then t[sub(text, i, j - 1)] = true end
    i = j + 1
  end
  return t
end
local DECLARED
local function declared_keys()
  if not DECLARED then
    DECLARED = {}
    for _, k in ipairs(KEYS) do DECLARED[k] = true end
  end
  return DECLARED
end
-- a score as the client sends it: a finite number in plain decimal text
local function valid_score(s)
  if type(s) ~= 'string' then return false end
  -- plain decimal digits with at least one before an optional point (no exponent), fewer
  -- than 300 characters: always a finite number, and never one that underflows to 0
  if #s < 300 and string.find(s, '^[-+]?%d+%.?%d*$') then return true end
  if not string.find(s, '^[-+]?%d*%.?%d*[eE]?[-+]?%d*$') then return false end
  local v = tonumber(s)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return false end
  local mantissa = string.match(s, '^[^eE]*')
  if v == 0 and string.find(mantissa, '[1-9]') then return false end  -- underflow
  return true
end
local CLAIMS = false
-- the key an entry lives in, that key's type and the entry's value (nil for a unique entry
-- with claims, which live in their value's own bucket and are changed by the client, and
-- for a line that is no entry). Each line is split and its key built once per call (a
-- write asks for it when it checks, plans its first write and writes): remembered for the
-- root, d and CLAIMS of the last ask (index_write_many.lua's objects share them).
local EKEY, ETYPE, EVALUE, EROOT, ED, ECLAIMS  -- (made at the first ask)
local function entry_key(root, d, line)
  if root ~= EROOT or d ~= ED or CLAIMS ~= ECLAIMS then
    EKEY, ETYPE, EVALUE, EROOT, ED, ECLAIMS = {}, {}, {}, root, d, CLAIMS
  end
  local k = EKEY[line]
  if k == nil then
    local kind, name, value = split(line)
    if kind == 'e' then k, ETYPE[line] = root .. 'eq' .. d .. name .. d .. value, 'set'
    elseif kind == 'r' then k, ETYPE[line] = root .. 'rng' .. d .. name, 'zset'
    elseif kind == 'u' and not CLAIMS then k, ETYPE[line] = root .. 'uq' .. d .. name, 'hash'
    else k = false end
    EKEY[line], EVALUE[line] = k, value
  end
  if not k then return nil end
  return k, ETYPE[line], EVALUE[line]
end
-- need[key] = the type it must hold ('' for any: only read with EXISTS)
local function need_entries(need, root, d, set)
  for line in pairs(set) do
    local k, tp = entry_key(root, d, line)
    if k then need[k] = tp end
  end
end
-- nil when every needed key is declared and of its type; else the reply to give.
-- typed (optional): key -> the type already checked in this call, not asked again (the
-- call's own writes only ever give a key the type checked)
local function check_keys(need, typed)
  local declared = declared_keys()
  local missing  -- (made only when a key is missing: a table fewer per check)
  for k in pairs(need) do
    if not declared[k] then
      missing = missing or {}
      missing[#missing + 1] = k
    end
  end
  if missing then
    table.sort(missing)
    return list_of({'KEYS'}, missing)
  end
  for k, want in pairs(need) do
    if want ~= '' and not (typed and typed[k] == want) then
      local t = redis.call('TYPE', k)['ok']
      if t ~= 'none' and t ~= want then return {'WRONGTYPE', k, t, want} end
      if typed then typed[k] = want end
    end
  end
  return nil
end
-- a read that is also the type check of its key (an error reply, not a script error)
local function read(want, command, key, ...)
  local r = redis.pcall(command, key, ...)
  if type(r) == 'table' and r.err then
    local t = redis.call('TYPE', key)['ok']
    if t ~= want then return nil, {'WRONGTYPE', key, t, want} end
    error(r.err)
  end
  return r
end
-- Entry writes held back (index_write_many.lua, hold_entries): per set or zset key, its
-- writes in order as runs of one command (SADD, SREM, ZADD, ZREM), each run sent by
-- flush_entries as one command per 1,000 arguments instead of one per object. Writes of
-- different members of a key commute; a run keeps the order of one member's writes. Only
-- sets and zsets are held: nothing of a call reads them back after its checks, whose type
-- checks (check_keys) pass for a key the call's writes gave its type. nil: written at once.
local HELD, HELD_KEYS
local function hold_entries() HELD, HELD_KEYS = {}, {} end
local function hold(k, command, a, b)
  local runs = HELD[k]
  if not runs then
    runs = {}
    HELD[k] = runs
    HELD_KEYS[#HELD_KEYS + 1] = k
  end
  local run = runs[#runs]
  if not run or run[1] ~= command then
    run = {command}
    runs[#runs + 1] = run
  end
  run[#run + 1] = a
  if b then run[#run + 1] = b end
end
-- sends every held write (in runs of at most 1,000 arguments: a ZADD's score and member
-- pairs stay whole, the runs' arguments starting at 2) and holds the next ones afresh
local function flush_entries()
  if not HELD then return end
  local keys, held = HELD_KEYS, HELD
  HELD, HELD_KEYS = {}, {}
  for _, k in ipairs(keys) do
    for _, run in ipairs(held[k]) do
      for i = 2, #run, 1000 do
        redis.call(run[1], k, unpack(run, i, math.min(i + 999, #run)))
      end
    end
  end
end
local function apply(root, d, id, line, add)
  local k, tp, value = entry_key(root, d, line)
  if HELD and tp == 'set' then
    hold(k, add and 'SADD' or 'SREM', id)
  elseif HELD and tp == 'zset' then
    if add then hold(k, 'ZADD', value, id) else hold(k, 'ZREM', id) end
  elseif tp == 'set' then
    if add then redis.call('SADD', k, id) else redis.call('SREM', k, id) end
  elseif tp == 'zset' then
    if add then redis.call('ZADD', k, value, id) else redis.call('ZREM', k, id) end
  elseif tp == 'hash' then
    if add then redis.call('HSET', k, value, id)
    elseif redis.call('HGET', k, value) == id then redis.call('HDEL', k, value) end
  end
end
-- ---- the all-ids index (ids_lib.lua's pages) as every write keeps it -------------------------
-- The state of a bucket's all-ids index (docs/design.md, "The all-ids index in pages"):
-- 'pages' when `root all` does not exist (converted: the pages are the index), 'zset' when
-- it is the unconverted ZSET of an older redmodel (writes go through to the pages, and a
-- removed id is also ZREM'd from it, so that the conversion never brings it back); a SET
-- (older still) or any other type refuses the write: {'WRONGTYPE', all, type, 'zset'}
-- (the client's error advises reindex for a SET). Checked once per call: the call's own
-- writes never make it exist (a ZREM may empty it: the 'zset' kept then only costs reads).
local ALL_STATE = {}
local function all_state(all)
  local s = ALL_STATE[all]
  if s then return s end
  local t = redis.call('TYPE', all)['ok']
  if t == 'none' then s = 'pages'
  elseif t == 'zset' then s = 'zset'
  else return nil, {'WRONGTYPE', all, t, 'zset'} end
  ALL_STATE[all] = s
  return s
end
-- the pages' directory and count, which a write script must have in KEYS (the pages
-- themselves cannot be declared: docs/design.md records that amendment)
local function ids_keys(need, root)
  need[root .. 'ids'] = ''
  need[root .. 'idn'] = ''
  return need
end
local NO_IDS = {}  -- an ids plan with nothing to write (never written to)
-- The ids plan of one object's write, made in its check phase (before its first write:
-- every read of it is also the type check of its key, so a wrong-typed directory, page,
-- count or split target refuses the object whole): remove (a delete, a forget) or add.
-- An object that had a record in a converted bucket is in the pages already: an add plans
-- nothing then, without a command. Answers the plan (NO_IDS: nothing), or nil and the
-- refusal. typed: the call's cache of checked keys (ids_lib checks the count once).
-- near (optional): for a call writing many objects, its memory of the pages of its last
-- add and removal ({add = {}, remove = {}}: ids_plan_add_near, ids_plan_remove_near).
-- absent (optional): an add of an object that is not stored (ids_plan_add's: its id is
-- counted only if its ZADD adds it, instead of asking the page first)
local function ids_plan_for(root, d, id, all, had_record, remove, typed, near, absent)
  local state, bad = all_state(all)
  if not state then return nil, bad end
  local plan
  if remove and near then
    plan, bad = ids_plan_remove_near(root, d, id, typed, near.remove)
  elseif remove then
    plan, bad = ids_plan_remove(root, d, id, typed)
  elseif had_record and state == 'pages' then
    return NO_IDS
  elseif near then
    plan, bad = ids_plan_add_near(root, d, id, typed, near.add, absent)
  else
    plan, bad = ids_plan_add(root, d, id, typed, absent)
  end
  if bad then return nil, bad end
  if state == 'zset' and remove then return {plan = plan, zrem = all, id = id} end
  if plan == nil then return NO_IDS end
  return {plan = plan}
end
-- writes an ids plan of ids_plan_for; deltas (optional): the call's count changes, written
-- by ids_flush at its end (else the count is written now); near: as ids_plan_for's
local function ids_write(p, deltas, near)
  if p.zrem then redis.call('ZREM', p.zrem, p.id) end
  if p.plan then
    if deltas then ids_apply_later(p.plan, deltas) else ids_apply(p.plan) end
    if near then ids_noted(p.plan, near.add, near.remove) end
  end
end

-- drop every entry of an object (old: its record's, or derived from its fields), its
-- record (had: it has one), the object from the all-ids index (ids: its plan,
-- ids_plan_for) and the expiry set
local function forget(root, d, id, rec, exp, old, ids, deltas, near, had)
  for line in pairs(old) do apply(root, d, id, line, false) end
  if had ~= false then redis.call('HDEL', rec, id) end
  ids_write(ids, deltas, near)
  redis.call('ZREM', exp, id)
end

-- ---- the derived record (docs/performance.md "Derived record") ---------------------------------
-- An object keeps a stored record only when its model says so (a blind index: the mode's
-- ':k' flag) or when it has an expiry after the write (the sweep undoes its entries after
-- its hash is gone). Otherwise its old entries are what its stored fields compute to, and
-- the client, which alone can compute them, sends an ASSUMPTION with a save, update,
-- delete or expire (its mode data starts with it):
--   na ('*': trusted, see below), full ('1': it covers every indexed field; 'n': too, and
--   the object may not be indexed at all yet: it is added to the all-ids index), old lines
--   ('=': the same as the entries argument), then na times: stored field, state ('1'
--   present | '0' absent | '?' unknown), the bytes assumed. Or na = 'w' .. n, then n
--   stored fields: each assumed to hold what this save or update writes to it (absent
--   if it writes none), read from its field pairs (a blind save: no bytes sent twice).
-- With no record and the object present, the script reads the assumed fields (HMGET):
-- all as assumed -> the old entries are the lines sent; else it answers
-- {'STORED', field, '1' | '0', bytes, ...} (every assumed field as it is now) and writes
-- nothing: the client computes the lines from those bytes and sends again. '*' (a
-- transaction's later write of an object, whose fields the client knows only through its
-- model of the earlier writes, all WATCHed) takes the lines as sent.
-- A record found where none is kept any more (an older redmodel, a persisted object) is
-- used as the old entries and dropped by the same write (lazy migration).
local function mode_flags(mode)
  local claims, keep = false, false
  while mode and #mode > 2 do
    local f = string.sub(mode, -2)
    if f == ':c' then claims = true
    elseif f == ':k' then keep = true
    else break end
    mode = string.sub(mode, 1, -3)
  end
  return mode, claims, keep
end
-- the assumption at A[at] (modes save, update, delete, expire): {n, full, olds, fields}
-- and the position after it, or nil when malformed. last (optional, else #A): the write's
-- last argument in A (index_write_many.lua reads each object's in its ARGV, uncopied)
local function assumption_arg(A, at, given_text, last)
  last = last or #A
  local na = A[at]
  local full, olds = A[at + 1], A[at + 2]
  if na == nil or full == nil or olds == nil or at + 2 > last then return nil end
  if olds == '=' then olds = given_text end
  local fresh = full == 'n'
  full = full == '1' or fresh
  if na == '*' then return {n = '*', full = full, fresh = fresh, olds = olds}, at + 3 end
  if string.sub(na, 1, 1) == 'w' then
    local n = tonumber(string.sub(na, 2))
    if n == nil or n < 0 or n % 1 ~= 0 or at + 2 + n > last then return nil end
    return {n = n, full = full, fresh = fresh, olds = olds, names = {unpack(A, at + 3, at + 2 + n)},
            A = A}, at + 3 + n
  end
  local n = tonumber(na)
  if n == nil or n < 0 or n % 1 ~= 0 or at + 2 + 3 * n > last then return nil end
  local names, states, bytes = {}, {}, {}
  for i = 1, n do
    local p = at + 3 * i
    names[i], states[i], bytes[i] = A[p], A[p + 1], A[p + 2]
    if states[i] ~= '1' and states[i] ~= '0' and states[i] ~= '?' then return nil end
  end
  return {n = n, full = full, fresh = fresh, olds = olds, names = names, states = states,
          bytes = bytes}, at + 3 + 3 * n
end
-- the old entries of a present object without a record, as the assumption says: the
-- lines sent when its fields hold what it assumed; else nil and the STORED answer
-- (for the 'w' form: pairs, where the write's field pairs start in asm.A, and npairs)
local function assumed_old(obj, asm, pairs, npairs)
  if asm.n == '*' then return lines(asm.olds) end
  if asm.n == 0 then return {} end
  if asm.A and not asm.states then  -- what the write writes to each (absent: nothing)
    local written = {}
    for i = pairs, pairs + 2 * npairs - 2, 2 do written[asm.A[i]] = asm.A[i + 1] end
    asm.states, asm.bytes = {}, {}
    for i = 1, asm.n do
      local v = written[asm.names[i]]
      asm.states[i] = v and '1' or '0'
      asm.bytes[i] = v or ''
    end
  end
  local now = redis.call('HMGET', obj, unpack(asm.names))
  local same = true
  for i = 1, asm.n do
    local st = asm.states[i]
    if (st == '1' and now[i] ~= asm.bytes[i]) or (st == '0' and now[i]) or st == '?' then
      same = false
      break
    end
  end
  if same then return lines(asm.olds) end
  local out = {'STORED'}
  for i = 1, asm.n do
    out[#out + 1] = asm.names[i]
    if now[i] then out[#out + 1] = '1'; out[#out + 1] = now[i]
    else out[#out + 1] = '0'; out[#out + 1] = '' end
  end
  return nil, out
end
-- whether the object will have an expiry after a write (ttl as write_expiry takes it);
-- with it, the object's PEXPIRETIME when it was read (write_expiry need not ask again)
local function expiring(obj, ttl, exists)
  if ttl == 'persist' then return false end
  if ttl ~= '' then return true end
  if not exists then return false end
  local at = redis.call('PEXPIRETIME', obj)
  return at > 0, at
end

-- ---- the rules of one object's write, shared by index_write.lua and index_write_many.lua ----
-- A (the write's arguments, index_write.lua's ARGV): mode, id, root, d, objprefix, ttl,
-- changed, entries, then mode data.
-- the ttl (A[6]) and the entry lines (A[8]) checked: the entries as a set, or nil and the
-- refusal
local function write_entries_arg(ttl, text)
  if not (ttl == '' or ttl == 'persist' or string.find(ttl, '^[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$')) then
    return nil, {'BADARG', 'ttl ' .. tostring(ttl)}
  end
  local given = lines(text)
  local find, sub = string.find, string.sub
  for line in pairs(given) do
    -- kind, a non-empty name, then the value (split's shape: no third separator before
    -- it), found by position: no substring made but a range line's value
    local _, e = find(line, '^[eru]\31[^\31]+\31')
    if not e then return nil, {'BADARG', 'entry ' .. line} end
    if sub(line, 1, 1) == 'r' then
      local value = sub(line, e + 1)
      if not valid_score(value) then return nil, {'BADARG', 'score ' .. value} end
    end
  end
  return given
end
-- the count of field pairs of a save or update (A[at]), nil if it is not one; last
-- (optional, else #A): as assumption_arg's
local function write_pairs_arg(A, at, last)
  local npairs = tonumber(A[at])
  if npairs == nil or npairs < 0 or npairs % 1 ~= 0 or at + 2 * npairs > (last or #A) then
    return nil
  end
  return npairs
end
-- need[key] = type for the entries in from and not in to; a line of held (optional)
-- among them stops it: that line is the answer
local function need_changed(need, root, d, from, to, held)
  for line in pairs(from) do
    if not to[line] then
      if held and held[line] then return line end
      local k, tp = entry_key(root, d, line)
      if k then need[k] = tp end
    end
  end
  return nil
end
-- the unique values in new (not in old, unless every) held by another id:
-- {line, name, value, owner} each (none with claims: the client handles those)
local NO_OWNERS = {}  -- never written to: the common answer, without a table per call
local function unique_owners(root, d, id, old, new, every)
  local owners = NO_OWNERS
  if CLAIMS then return owners end
  for line in pairs(new) do
    -- (the first letter first: most lines are not unique ones, and need no split)
    local kind, name, value
    if string.sub(line, 1, 1) == 'u' and (every or not old[line]) then
      kind, name, value = split(line)
    end
    if kind == 'u' then
      local owner = redis.call('HGET', root .. 'uq' .. d .. name, value)
      if owner and owner ~= id then
        if owners == NO_OWNERS then owners = {} end
        owners[#owners + 1] = {line, name, value, owner}
      end
    end
  end
  return owners
end
-- with claims, the unique lines the object gives up (in from, not in to), sorted: the
-- client releases them
local NO_LINES = {}  -- never written to: released's answer without claims
local function released(from, to)
  if not CLAIMS then return NO_LINES end
  local out = {}
  for line in pairs(from) do
    if not to[line] and string.sub(line, 1, 1) == 'u' then out[#out + 1] = line end
  end
  table.sort(out)
  return out
end
local function answer(result, extra)
  if #extra > 0 then return list_of({'RELEASE', result}, extra) end
  return result
end
-- a save's or update's fields: HSET the pairs, HDEL the rest; a hash left empty keeps a
-- placeholder field so that the object exists (it can be empty only without pairs or if
-- the HDEL removed something: only then is it asked, saving a command per object).
-- existed (optional): whether the object was a hash before the write, as the caller read
-- it before its first write: with no pair and nothing removed, the write left it as it
-- was, so it is not asked (a tracked re-save with nothing dirty, a new object without a
-- field). last (optional, else #A): as assumption_arg's
local function write_fields(obj, A, npairs, at, existed, last)
  last = last or #A
  if npairs > 0 then call_parts('HSET', obj, A, at + 1, at + 2 * npairs) end
  local removed = 0
  if last > at + 2 * npairs then removed = call_parts('HDEL', obj, A, at + 1 + 2 * npairs, last) end
  if npairs > 0 and removed == 0 then return false end
  local there
  if removed == 0 and existed ~= nil then there = existed
  else there = redis.call('EXISTS', obj) == 1 end
  if not there then
    redis.call('HSET', obj, '\0', '')
    return true  -- made again (emptied): whatever expiry it had is gone
  end
  return false
end
-- ---- the first write as a type check (index_write.lua's save and update) -------------------
-- An entry key of an equality or range index is only ever written by a save (SADD, SREM,
-- ZADD, ZREM), and each of those refuses a wrong-typed key before it writes anything. So
-- one of them needs no TYPE of its own when its write is the script's first write: a
-- wrong-typed key refuses it, and with it the whole script, before anything is written
-- (first_write). The other keys are checked before, as always (check_keys).
local FIRST_DONE  -- the line first_write wrote: write_index does not apply it again
-- a line this write removes whose key holds a set or zset, else one it adds (but a range
-- line of any value, '*'), its key and that key's type; nil when there is none. (A removal
-- first: write_index removes before it adds, and a range key's removal and add are of the
-- same member, so an add may come first only when no set or zset line is removed.)
local function first_entry(root, d, old, new)
  for _, pass in ipairs({{old, new, false}, {new, old, true}}) do
    for line in pairs(pass[1]) do
      if not pass[2][line] then
        local k, tp = entry_key(root, d, line)
        if k and (tp == 'set' or tp == 'zset')
            and not (pass[3] and string.sub(line, -2) == ANY) then
          return line, pass[3], k, tp
        end
      end
    end
  end
  return nil
end
-- writes first_entry's line as the script's first write: nil, or the refusal (nothing
-- written) when its key holds another type
local function first_write(id, line, add, key, want)
  local kind, _, value = split(line)
  local r
  if kind == 'e' then r = redis.pcall(add and 'SADD' or 'SREM', key, id)
  elseif add then r = redis.pcall('ZADD', key, value, id)
  else r = redis.pcall('ZREM', key, id) end
  if type(r) == 'table' and r.err then
    local t = redis.call('TYPE', key)['ok']
    if t ~= want and t ~= 'none' then return {'WRONGTYPE', key, t, want} end
    error(r.err)
  end
  FIRST_DONE = line
  return nil
end

-- the entries of old not in new dropped, those of new not in old (all if every) added;
-- the record says new when the object keeps one (keep), else it has none (had: it had
-- one, dropped now), and the object is among the ids (ids: its plan, ids_plan_for)
local function write_index(root, d, id, rec, old, new, every, ids, deltas, near, keep, had)
  for line in pairs(old) do
    if not new[line] and line ~= FIRST_DONE then apply(root, d, id, line, false) end
  end
  for line in pairs(new) do
    if (every or not old[line]) and line ~= FIRST_DONE then apply(root, d, id, line, true) end
  end
  if keep then
    local text = {}
    for line in pairs(new) do
      -- a range line of any value (a transaction's score an increment moved, which the
      -- client does not follow): the record holds the score the index has, as the client
      -- writes it (%.17g: an int's digits up to 2^53, a float's text); none: no line
      -- (the first and last letters first: the split only for such a line)
      if string.sub(line, 1, 1) == 'r' and string.sub(line, -2) == ANY then
        local kind, name, value = split(line)
        if value == '*' then
          flush_entries()  -- (a held write of this key first: the score read is the index's)
          local score = redis.call('ZSCORE', root .. 'rng' .. d .. name, id)
          line = score and (kind .. SEP .. name .. SEP .. string.format('%.17g', tonumber(score)))
        end
      end
      if line then text[#text + 1] = line end
    end
    table.sort(text)
    redis.call('HSET', rec, id, table.concat(text, '\n'))
  elseif had then
    redis.call('HDEL', rec, id)
  end
  ids_write(ids, deltas, near)
end
-- the object's expiry after a write (ttl: '' keep | 'persist' | ms) and the expiry set
-- that mirrors it; the answer of an expire ('persist': whether it had one, ms: 1; nil
-- when kept). existed: the object was a hash before the write (a new one has no expiry).
-- had (optional): the id's score in the expiry set before the write, as ZSCORE answered
-- it (false: none), read by the caller before its first write: a removal of what is not
-- there, or a score set to what it is, is not sent (nil: not read, always sent)
-- at (optional): the object's PEXPIRETIME read before the write (by expiring), when the
-- write cannot have changed it
local function write_expiry(obj, exp, id, ttl, existed, had, at)
  if ttl == 'persist' then
    local r = redis.call('PERSIST', obj)
    if had ~= false then redis.call('ZREM', exp, id) end
    return r
  elseif ttl ~= '' then
    redis.call('PEXPIRE', obj, ttl)
    -- the expiry the server stored, exactly (TIME + ttl can be a millisecond later)
    redis.call('ZADD', exp, redis.call('PEXPIRETIME', obj), id)
    return 1
  elseif not existed then
    if had ~= false then redis.call('ZREM', exp, id) end
  else
    at = at or redis.call('PEXPIRETIME', obj)
    if at > 0 then
      if not had or tonumber(had) ~= at then redis.call('ZADD', exp, at, id) end
    elseif had ~= false then redis.call('ZREM', exp, id) end
  end
  return nil
end
