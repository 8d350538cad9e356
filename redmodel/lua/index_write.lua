--! include clock
--! include index_lib
--! include index_acl
-- counter_lib (about 20 functions and tables) is defined only by an increment: a script's
-- body runs whole on every call, so every function it defines is made again each time
-- (about 0.1 us each), and the other modes never call these
local read_counters, plan_counters, apply_counters, int_parse, int_text, float_parse
local function counters()
--! include counter_lib
  return read_counters, plan_counters, apply_counters, int_parse, int_text, float_parse
end
-- One write of one object of an indexed model, with its index entries, all or nothing.
-- KEYS: obj, rec, all, exp, then every other key the client expects the write to touch:
-- the all-ids pages' directory and count (root ids, root idn: index_lib's ids_keys), entry
-- keys, and the objects owning a unique value it wants. The all-ids index is the pages of
-- ids_lib.lua; `all` is only read (its state) and, unconverted, ZREM'd from (index_lib).
-- ARGV: mode (save | update | incr | delete | expire | reindex | forget, ':k' appended
-- when the model keeps a record for every object, then ':c' with claims), id, root, d,
-- objprefix, ttl ('' keep | 'persist' | ms), changed ('*' or names joined by \31),
-- entries (lines), then mode data:
--   save / update: the assumption (index_lib: "the derived record"), npairs, pairs...,
--     fields to HDEL...
--   delete / expire: the assumption
--   incr: the counters (read_counters), then per change: index name ('' if none), eq, range,
--     then the pin token ('' none) and, from a transaction, the entry lines the object's
--     fields computed to before MULTI (WATCHed): used when it is unlisted (below)
--   reindex: n, then n times: stored field, '1' | '0' (present), its text: the stored
--     fields the entries were computed from, as the client read them. An object whose
--     fields differ now (a writer changed it after that read) answers {'CHANGED'} and
--     nothing is written: the client reads it again (entries of values the object no
--     longer holds are never written).
-- An object without a record whose fields are not as assumed answers {'STORED', field,
-- '1' | '0', bytes, ...} and nothing is written: the client sends again. An update of
-- some fields of an object without a record missing from the all-ids pages answers
-- {'UNLISTED'} (nothing written): the client sends it again assuming every field.
-- Refusals (nothing written): {'KEYS', missing...}, {'WRONGTYPE', key, type, expected},
-- {'UNIQUE', name, value, owner id}, {'BADARG', what} and the counter refusals of counter_lib.
local obj, rec, all, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, id, root, d, objprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, changed, newtext = ARGV[6], ARGV[7], ARGV[8] or ''
local KEEP
mode, CLAIMS, KEEP = mode_flags(mode)

-- ---- argument checks ----------------------------------------------------------------------
local MODES = {save = true, update = true, incr = true, delete = true, expire = true,
               reindex = true, forget = true}
if not MODES[mode] or not id or id == '' or not root or not d or not objprefix or not changed then
  return {'BADARG', 'mode or id'}
end
local given, bad = write_entries_arg(ttl, newtext)
if not given then return bad end
local npairs, changes, bounds, names = 0, nil, nil, {}
local PIN = ''
local LISTING  -- a transaction's increment: the object's entries as read before MULTI
local asm, at = nil, 9
if mode == 'save' or mode == 'update' or mode == 'delete' or mode == 'expire' then
  asm, at = assumption_arg(ARGV, 9, newtext)
  if not asm then return {'BADARG', 'assumption'} end
end
if mode == 'save' or mode == 'update' then
  npairs = write_pairs_arg(ARGV, at)
  if not npairs then return {'BADARG', 'pairs'} end
elseif mode == 'reindex' then
  local n = tonumber(ARGV[9])
  if n == nil or n < 0 or n % 1 ~= 0 or 9 + 3 * n > #ARGV then return {'BADARG', 'fields'} end
elseif mode == 'incr' then
  read_counters, plan_counters, apply_counters, int_parse, int_text, float_parse = counters()
  local p
  changes, bounds, p = read_counters(9)
  if changes == nil then return {'BADARG', 'counters'} end
  for i = 1, #changes do
    local at = p + 3 * (i - 1)
    names[i] = {ARGV[at], ARGV[at + 1] == '1', ARGV[at + 2] == '1'}
    if names[i][1] == nil then return {'BADARG', 'index names'} end
  end
  PIN = ARGV[p + 3 * #changes] or ''
  LISTING = ARGV[p + 3 * #changes + 1]
end
-- An increment of an equality-indexed int outside a transaction carries a token (PIN).
-- When it must ask for its entry keys it pins the field (a hidden field of the object,
-- '\0pin' .. SEP .. name = token \31 time): until its resend lands (or PIN_MS pass),
-- other pinning increments of the field answer {'PINNED'} and write nothing, so the
-- value cannot move under the resend, whatever the amounts.
local PIN_MS = 2000
local function pin_field(name) return '\0pin' .. SEP .. name end
-- a refusal of an increment (nothing written): the pins this call set on an earlier "needs
-- keys" answer go with it, so the object is as it was and no other writer waits on them
local function unpinned(r)
  if PIN ~= '' then
    for i = 1, #changes do
      local f = names[i][2] and pin_field(names[i][1])
      local cur = f and redis.call('HGET', KEYS[1], f)
      if cur and string.match(cur, '^(.*)\31%d+$') == PIN then redis.call('HDEL', KEYS[1], f) end
    end
  end
  return r
end

-- ---- the fixed keys hold their types; what the object has now ------------------------------
local objtype = redis.call('TYPE', obj)['ok']
-- a forget (repair: the object is gone) takes a key of another type at the object's key for
-- no object (it is not redmodel's: it is never written here, its entries are dropped)
if objtype ~= 'none' and objtype ~= 'hash' and mode ~= 'forget' then
  return {'WRONGTYPE', obj, objtype, 'hash'}
end
local refusal = check_keys(ids_keys({[rec] = '', [all] = '', [exp] = ''}, root))
if refusal then return unpinned(refusal) end
local _
_, refusal = all_state(all)
if refusal then return unpinned(refusal) end
-- the id's expiry score: the read is the expiry set's type check, and tells write_expiry
-- what it need not send (a new object's ZREM)
local had_exp
had_exp, refusal = read('zset', 'ZSCORE', exp, id)
if refusal then return unpinned(refusal) end
local exists = objtype == 'hash'
if not exists and (mode == 'update' or mode == 'expire') then return 0 end
if not exists and mode == 'incr' then return {'MISSING'} end
if exists and mode == 'reindex' then
  for i = 10, 9 + 3 * tonumber(ARGV[9]), 3 do
    local now = redis.call('HGET', obj, ARGV[i])
    if (ARGV[i + 1] == '1') ~= (now ~= false) or (now and now ~= ARGV[i + 2]) then
      return {'CHANGED'}
    end
  end
end
if mode == 'incr' and PIN ~= '' then
  local now = time_ms()
  for i = 1, #changes do
    if names[i][2] then
      local cur = redis.call('HGET', obj, pin_field(names[i][1]))
      if cur then
        local owner, at = string.match(cur, '^(.*)\31(%d+)$')
        if owner ~= PIN and at and now - tonumber(at) < PIN_MS and now >= tonumber(at) then
          return {'PINNED', names[i][1]}
        end
      end
    end
  end
end
if exists and mode == 'forget' then return 0 end
local record
record, refusal = read('hash', 'HGET', rec, id)
if refusal then return unpinned(refusal) end
local had = record ~= false
-- whether the object keeps a record after this write; full: the entries after it are all
-- known (a whole save, a record, an assumption of every field), else it cannot start one
local keep, exp_at = KEEP, nil
local full = had or mode == 'save' or mode == 'reindex' or (asm ~= nil and asm.full)
local old = {}
if had then
  old = lines(record)
elseif asm and (exists or asm.n == '*') and (mode ~= 'expire' or KEEP or ttl ~= 'persist') then
  -- (trusted lines stand for a gone object too: a raw DEL of the same transaction)
  old, refusal = assumed_old(obj, asm, at + 1, npairs)
  if not old then return refusal end
end
-- (after the assumption: a STORED answer reads nothing more)
if not keep and mode ~= 'delete' and mode ~= 'forget' then
  keep, exp_at = expiring(obj, ttl, exists)
end
-- a delete or reindex of an object that is gone drops what is left of its entries
local answer_gone = (mode == 'forget') and 1 or 0
if not exists and (mode == 'delete' or mode == 'reindex') then mode = 'forget' end

-- the object's place among all the ids (its reads are the type checks of the directory,
-- page, count and split target it writes). Only a record says the object is listed
-- already (it was written with it); an object without one may have been stored before
-- its model had an index (a process still running a version of the model without one),
-- so its page is looked at (two reads, no round trip). A reindex looks even when the
-- object has a record: it is the repair of pages that lost an id.
local ids
ids, refusal = ids_plan_for(root, d, id, all, had and mode ~= 'reindex',
                            mode == 'forget' or mode == 'delete', {}, nil, not exists)
if not ids then return unpinned(refusal) end
-- An object without a record missing from its page has NO entries (only a record or the
-- listing says it is indexed): every entry of what it holds after the write is written
-- (every), and those of the old fields that differ are still removed (harmless when
-- absent). An update that names only some fields, or an increment, does not know the
-- other indexed fields' entries: it answers {'UNLISTED'} and writes nothing (the client
-- sends an update again assuming every indexed field, and indexes the object before it
-- sends an increment again: HashLayout.listing); a transaction's increment sends them
local every = mode == 'reindex'
if not had and exists and ids ~= NO_IDS
    and (mode == 'save' or mode == 'update' or mode == 'expire' or mode == 'incr') then
  if mode == 'incr' and LISTING then
    old = lines(LISTING)
    full = true  -- every entry is known (WATCHed): one with an expiry keeps its record
  elseif (mode == 'incr' or (mode == 'update' and not (asm and asm.full))) and not KEEP then
    return unpinned({'UNLISTED'})
  end
  if mode == 'expire' and asm and not KEEP and ttl == 'persist' then
    -- (a persist did not read its assumption: nothing to move, unless it is unlisted)
    old, refusal = assumed_old(obj, asm, at + 1, npairs)
    if not old then return refusal end
  end
  every = true
end
-- an object that is gone (expired, deleted behind redmodel's back) keeps none of its
-- entries: its record's, or those a raw DEL of a transaction left, are only removed, and
-- every value it takes is written and checked (its unique values against their holders)
if not exists then every = true end

-- ---- the entries after the write ------------------------------------------------------------
local new = {}
local after, stored
if mode == 'save' or mode == 'reindex' then
  new = given
elseif mode == 'update' then
  local ch = {}
  if changed ~= '*' then
    for name in string.gmatch(changed, '[^\31]+') do ch[name] = true end
    for line in pairs(old) do
      local _, name = split(line)
      if not ch[name] then new[line] = true end
    end
  end
  for line in pairs(given) do new[line] = true end
elseif mode == 'expire' then
  new = old
elseif mode == 'incr' then
  after, stored = plan_counters(obj, changes, bounds)
  if after == nil then return unpinned(stored) end
  if not had then
    -- derived: the old entries of each incremented field from its old stored value (or,
    -- stored nowhere, its default: what a read gives it), as its new ones are made below
    -- (an int's digits, a float's %.17g): what IndexedField.text and score_text give for
    -- an int or float
    for i = 1, #changes do
      local name, eq, rng = names[i][1], names[i][2], names[i][3]
      local was = stored[changes[i][1]] or changes[i][6]
      if was and name ~= '' then
        local v
        if changes[i][2] == 'i' then v = int_parse(was, true) else v = float_parse(was) end
        if v then
          local text = (changes[i][2] == 'i') and int_text(v) or string.format('%.17g', v)
          if eq then old['e' .. SEP .. name .. SEP .. text] = true end
          if rng then old['r' .. SEP .. name .. SEP .. text] = true end
        end
      end
    end
  end
  local ch = {}
  for i = 1, #changes do if names[i][1] ~= '' then ch[names[i][1]] = true end end
  for line in pairs(old) do
    local _, name = split(line)
    if not ch[name] then new[line] = true end
  end
end

-- ---- every key this write touches: declared, and of its type ----------------------------------
local need = {}
need_changed(need, root, d, old, new)
if every then need_entries(need, root, d, new)
else need_changed(need, root, d, new, old) end
if mode == 'incr' then
  for i = 1, #changes do
    local name, eq, rng = names[i][1], names[i][2], names[i][3]
    if eq then
      if changes[i][2] ~= 'i' then return unpinned({'BADARG', 'equality index on a float'}) end
      need[root .. 'eq' .. d .. name .. d .. int_text(after[i])] = 'set'
    end
    if rng then need[root .. 'rng' .. d .. name] = 'zset' end
  end
end
if keep and full then  -- a record of a range line of any value reads its score there
  for line in pairs(new) do
    if string.sub(line, 1, 1) == 'r' and string.sub(line, -2) == ANY then
      local kind, name, value = split(line)
      if kind == 'r' and value == '*' then need[root .. 'rng' .. d .. name] = 'zset' end
    end
  end
end
-- one entry key of a save or update is checked by its write, the script's first (index_lib:
-- first_write): declared, not asked its type now
local first_line, first_add, first_key, first_tp
if mode == 'save' or mode == 'update' then
  first_line, first_add, first_key, first_tp = first_entry(root, d, old, new)
  if first_key then need[first_key] = '' end
end
refusal = check_keys(need)
if refusal then
  if refusal[1] == 'KEYS' and mode == 'incr' and PIN ~= '' then
    local now = time_ms()
    for i = 1, #changes do
      if names[i][2] then redis.call('HSET', obj, pin_field(names[i][1]), PIN .. '\31' .. now) end
    end
    return refusal
  end
  return unpinned(refusal)
end

-- unique values this write takes: free, or held by an object that is gone (a raw DEL, an
-- expiry not swept yet) or no longer holds it, whose claim it takes over
local conflicts = {}
if not CLAIMS and mode ~= 'forget' and mode ~= 'delete' then
  local owners = unique_owners(root, d, id, old, new, every)
  local more = {}
  for _, o in ipairs(owners) do more[objprefix .. o[4]] = '' end
  refusal = check_keys(more)
  if refusal then return unpinned(refusal) end
  for _, o in ipairs(owners) do
    local line, name, value, owner = o[1], o[2], o[3], o[4]
    -- the owner holds it: by its record if it has one, else by being there (the client
    -- judges a holder changed by raw commands on its stored fields: free_unheld). An
    -- object is a hash at its key: a key of another type there is no owner (30AW F2)
    local alive = redis.call('TYPE', objprefix .. owner)['ok'] == 'hash'
    local orec = alive and redis.call('HGET', rec, owner)
    if alive and (orec == false or lines(orec)[line]) then
      if mode ~= 'reindex' then return unpinned({'UNIQUE', name, value, owner}) end
      conflicts[#conflicts + 1] = line  -- two live objects claim it: the owner keeps it
      new[line] = nil
    end
  end
end

-- ---- the ACL allows every command the writes below may call (index_acl.lua) ------------------
if mode == 'forget' or mode == 'delete' then
  acl_forget(root, d, rec, exp, old, ids, had)
  if mode == 'delete' then acl('del', obj) end
else
  if mode == 'incr' then
    acl_counters(obj, changes)
    for i = 1, #changes do
      local name, eq, rng = names[i][1], names[i][2], names[i][3]
      if eq then
        acl('hget', obj)
        acl('time')
        acl('hdel', obj)
        acl('sadd', root .. 'eq' .. d .. name .. d .. int_text(after[i]))
      end
      if rng then acl('zadd', root .. 'rng' .. d .. name) end
    end
  elseif mode == 'save' or mode == 'update' then
    acl_fields(obj, npairs, at, exists, #ARGV)
  end
  acl_index(root, d, rec, old, new, every, ids, keep and full, had)
  acl_expiry(obj, exp, ttl, exists, had_exp)
end
acl_ok()

-- ---- writes -----------------------------------------------------------------------------------
if mode == 'forget' then
  local gone = released(old, {})
  forget(root, d, id, rec, exp, old, ids, nil, nil, had)
  return answer(had and answer_gone or 0, gone)
end
if mode == 'delete' then
  local gone = released(old, {})
  forget(root, d, id, rec, exp, old, ids, nil, nil, had)
  redis.call('DEL', obj)
  return answer(1, gone)
end
local result = 1
if mode == 'incr' then
  local texts = apply_counters(obj, changes, after)
  for i = 1, #changes do
    if names[i][2] then
      local f = pin_field(names[i][1])
      local cur = redis.call('HGET', obj, f)
      if cur then  -- ours, or one left by an increment that gave up (expired): dropped
        local owner, at = string.match(cur, '^(.*)\31(%d+)$')
        local now = time_ms()
        if not at or (PIN ~= '' and owner == PIN) or now - tonumber(at) >= PIN_MS
            or now < tonumber(at) then
          redis.call('HDEL', obj, f)
        end
      end
    end
  end
  for i = 1, #changes do
    local name, eq, rng = names[i][1], names[i][2], names[i][3]
    if eq then new['e' .. SEP .. name .. SEP .. texts[i]] = true end
    if rng then
      -- the score as the client writes it: an int's digits, a float's %.17g
      local score = texts[i]
      if changes[i][2] == 'f' then score = string.format('%.17g', tonumber(score)) end
      new['r' .. SEP .. name .. SEP .. score] = true
    end
  end
  result = list_of({'OK'}, texts)
elseif mode == 'save' or mode == 'update' then
  if first_line then  -- the first write (nothing before it is one)
    refusal = first_write(id, first_line, first_add, first_key, first_tp)
    if refusal then return refusal end
  end
  if write_fields(obj, ARGV, npairs, at, exists) then exp_at = nil end  -- made again: no expiry
end
local gone = released(old, new)
write_index(root, d, id, rec, old, new, every, ids, nil, nil, keep and full, had)
local expired = write_expiry(obj, exp, id, ttl, exists, had_exp, exp_at)
if mode == 'expire' and expired ~= nil then result = expired end
if mode == 'reindex' then
  for _, line in ipairs(gone) do conflicts[#conflicts + 1] = line end
  return list_of({'REINDEX', #conflicts - #gone}, conflicts)
end
return answer(result, gone)
