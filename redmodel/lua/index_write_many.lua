--! include clock
--! include index_lib
--! include index_acl
-- Whole saves and deletes of many objects of one bucket of an indexed model in one call,
-- in order, each all or nothing, each as index_write.lua would do it alone (the same
-- checks, entries, record, all-ids and expiry sets): the batched path of save_many and
-- delete_many. The types of the shared keys (all-ids state, the pages' directory check
-- reads and count, expiry, entry keys) are checked once per call, each object's place in
-- the all-ids pages is planned in its own check phase (after the earlier objects' writes:
-- a split of one moves the page of the next), the count is written once per call (at its
-- end), and the call is one script run instead of one per object.
-- KEYS: every key of every object (obj, rec, all, exp, the pages' directory and count,
-- then the entry keys it expects), deduplicated. ARGV: count, then items, each a header
-- or an object. The arguments the objects of a call share are sent once, in a header that
-- holds until the next one:
--   'h', the positions in KEYS of rec, all and exp, then index_write.lua's mode (save or
--   delete, ':k' when the model keeps records, ':c' with claims), root, d, objprefix, ttl
--   and changed (10 arguments);
-- an object: the position in KEYS of its obj, the count m of what follows, then its id,
--   entries and mode data (index_write.lua's ARGV without what the header holds).
-- A malformed call (an object before the first header, a cut header or object, arguments
-- left over) is refused whole (BADARG), nothing written.
-- Reply: per object, index_write.lua's answer, or (nothing of it written):
--   {'KEYS', missing...}  keys it needs that no object declared;
--   {'STORED', ...}       index_write.lua's: its fields are not as it assumed (sent again);
--   {'LATER'}             it must be written after an object of this call that was not
--                         (the same id, or a unique value that object gives up or takes),
--                         or a unique value it takes is held by another id (the client
--                         sends it alone, where the holder is judged).
local n = tonumber(ARGV[1])
if n == nil or n < 0 or n % 1 ~= 0 then return {'BADARG', 'count'} end

local typed = {}  -- key -> the type checked (or written) in this call
local deltas = {}  -- the all-ids count's change in this call (ids_flush writes it)
local near = {add = {}, remove = {}}  -- the pages of the call's last add and removal

-- The records and expiry scores of the call's ids, read once per call (one HMGET of the
-- record hash and one ZMSCORE of the expiry set for all of them, instead of an HGET and a
-- ZREM or ZSCORE per object), at the first object that needs them. Only an object's own
-- write changes its id's record or score, so a value read ahead is the one its object
-- would read at its turn, once: each is taken (removed) before the object's first write,
-- and a later object of the same id reads its own (the record) or none (the score:
-- write_expiry then sends what it would otherwise skip). A read that fails (a wrong-typed
-- key) reads nothing ahead: each object then reads alone and is refused as before.
local AHEAD = {}  -- key -> {id -> value (false: none)} or false (not read ahead)
local ITEMS  -- the call's objects: {obj position, first argument, count, header}
local function read_ahead(cmd, key, slot)
  local got = AHEAD[key]
  if got == nil then
    got = false
    local ids = {}
    for _, item in ipairs(ITEMS) do
      if item[4][slot] == key then ids[#ids + 1] = ARGV[item[2]] end
    end
    if #ids > 0 then
      got = {}
      for i = 1, #ids, 1000 do
        local j = math.min(i + 999, #ids)
        local r = redis.pcall(cmd, key, unpack(ids, i, j))
        if type(r) ~= 'table' or r.err then got = false; break end
        for k = i, j do if got[ids[k]] == nil then got[ids[k]] = r[k - i + 1] end end
      end
    end
    AHEAD[key] = got
  end
  return got
end
-- the value read ahead for id (taken), or nil: not read ahead, or taken already
local function ahead(cmd, key, slot, id)
  local got = read_ahead(cmd, key, slot)
  if not got then return nil end
  local v = got[id]
  got[id] = nil
  return v
end

local late, held = {}, {}  -- ids not written in this call; unique lines they touch
local function defer(id, old, new, reply)
  late[id] = true
  if not CLAIMS then
    for line in pairs(old) do if string.sub(line, 1, 1) == 'u' then held[line] = true end end
    for line in pairs(new) do if string.sub(line, 1, 1) == 'u' then held[line] = true end end
  end
  return reply
end

-- whether the object being written has started its writes (then an error is the call's),
-- and whether an earlier object of the call wrote
local WRITING, WROTE = false, false
-- one object: h its header ({rec, all, exp, mode, root, d, objprefix, ttl, changed}), its
-- arguments ARGV[from .. last] (id, entries, mode data: read where they are, not copied;
-- index_write.lua's ARGV from its 8th on, so its position p is from + p - 7 here)
local function one(obj, h, from, last)
  local rec, all, exp = h[1], h[2], h[3]
  local mode, id, root, d, objprefix = h[4], ARGV[from], h[5], h[6], h[7]
  local ttl, changed, newtext = h[8], h[9], ARGV[from + 1] or ''
  local A = ARGV
  local keep
  mode, CLAIMS, keep = mode_flags(mode)
  if (mode ~= 'save' and mode ~= 'delete') or not id or id == '' or not root or not d
      or not objprefix or not changed or not obj or not rec or not all or not exp then
    return {'BADARG', 'mode or id'}
  end
  local given, bad = write_entries_arg(ttl, newtext)
  if not given then return bad end
  local npairs = 0
  local asm, at = assumption_arg(A, from + 2, newtext, last)
  if not asm then return {'BADARG', 'assumption'} end
  if mode == 'save' then
    npairs = write_pairs_arg(A, at, last)
    if not npairs then return {'BADARG', 'pairs'} end
  end
  -- the header's keys are checked once per header (declared, and of their types: typed
  -- remembers those), then only each object's own key (declared)
  local refusal
  if h.checked then
    if not declared_keys()[obj] then refusal = {'KEYS', obj} end
  else
    refusal = check_keys(ids_keys({[obj] = '', [rec] = '', [all] = '', [exp] = 'zset'}, root),
                         typed)
    if not refusal then h.checked = true end
  end
  if refusal then return defer(id, {}, given, refusal) end
  local _
  _, refusal = all_state(all)
  if refusal then return defer(id, {}, given, refusal) end
  local objtype = redis.call('TYPE', obj)['ok']
  if objtype ~= 'none' and objtype ~= 'hash' then return {'WRONGTYPE', obj, objtype, 'hash'} end
  local exists = objtype == 'hash'
  local record = ahead('HMGET', rec, 1, id)
  if record == nil then
    record, refusal = read('hash', 'HGET', rec, id)
    if refusal then return refusal end
  end
  -- (taken here, before the object's first write, as its record: every object that
  -- writes has taken both)
  local had_exp = ahead('ZMSCORE', exp, 3, id)
  local had = record ~= false
  local old = {}
  if had then
    old = lines(record)
  elseif late[id] then
    old = lines(asm.olds)
  elseif exists then
    old, refusal = assumed_old(obj, asm, at + 1, npairs)
    if not old then return defer(id, lines(asm.olds), given, refusal) end
  end
  if late[id] then return defer(id, old, given, {'LATER'}) end
  local new = given
  if mode == 'delete' then new = {} end
  -- its place among all the ids, planned now (after the earlier objects' writes; a plan
  -- not written leaves the pages and near as they are); only a record says it is listed
  -- already, and one without a record missing from its page has no entries: all of new
  -- are written (every, as index_write.lua)
  local ids
  ids, refusal = ids_plan_for(root, d, id, all, had, mode == 'delete', typed,
                              near, not exists)
  if not ids then return refusal end
  -- (and a gone object keeps none of its entries: its record's are only removed, and
  -- every value it takes is written and checked, as index_write.lua)
  local every = not exists or (mode == 'save' and not had and ids ~= NO_IDS)

  local need = {}
  if need_changed(need, root, d, old, new, held)
      or need_changed(need, root, d, new, every and {} or old, held) then
    return defer(id, old, new, {'LATER'})
  end
  refusal = check_keys(need, typed)
  if refusal then
    if refusal[1] == 'KEYS' then return defer(id, old, new, refusal) end
    return refusal
  end
  if mode == 'save' and #unique_owners(root, d, id, old, new, every) > 0 then
    return defer(id, old, new, {'LATER'})
  end

  -- the ACL allows every command of this object's writes (index_acl.lua): else it answers
  -- {'NOPERM', command, key}, nothing of it written
  if mode == 'delete' then
    acl_forget(root, d, rec, exp, old, ids, had)
    if exists then acl('del', obj) end
    local no = acl_refusal()
    if no then return defer(id, old, new, no) end
    WRITING = true
    local gone = released(old, {})
    forget(root, d, id, rec, exp, old, ids, deltas, near, had)
    if not exists then return answer(0, gone) end  -- as index_write.lua: none deleted
    redis.call('DEL', obj)
    return answer(1, gone)
  end
  local expires, exp_at = keep, nil
  if not keep then expires, exp_at = expiring(obj, ttl, exists) end
  acl_fields(obj, npairs, at, exists, last)
  acl_index(root, d, rec, old, new, every, ids, expires, had)
  acl_expiry(obj, exp, ttl, exists, had_exp)
  local no = acl_refusal()
  if no then return defer(id, old, new, no) end
  WRITING = true
  if write_fields(obj, A, npairs, at, exists, last) then exp_at = nil end  -- made again: no expiry
  local gone = released(old, new)
  write_index(root, d, id, rec, old, new, every, ids, deltas, near, expires, had)
  write_expiry(obj, exp, id, ttl, exists, had_exp, exp_at)
  return answer(1, gone)
end

-- the whole call's shape first (nothing is written when it is malformed): per object, its
-- obj's position, where its arguments start and their count, and its header
local items, at = {}, 2
local r, a, e, H  -- the current header's rec, all, exp positions and shared arguments
while #items < n do
  if ARGV[at] == 'h' then
    r, a, e = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
    if not (r and a and e) or at + 9 > #ARGV then return {'BADARG', 'header'} end
    H = {KEYS[r], KEYS[a], KEYS[e], ARGV[at + 4], ARGV[at + 5], ARGV[at + 6], ARGV[at + 7],
         ARGV[at + 8], ARGV[at + 9]}
    at = at + 10
  else
    local o, m = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    if not (H and o and m) or m < 2 or m % 1 ~= 0 or at + 1 + m > #ARGV then
      return {'BADARG', 'object ' .. (#items + 1)}
    end
    items[#items + 1] = {o, at + 2, m, H}
    at = at + 2 + m
  end
end
if at <= #ARGV then return {'BADARG', 'arguments after the last object'} end
ITEMS = items
hold_entries()  -- the call's set and zset entry writes, sent per key and command at the end
local out = {}
for i, item in ipairs(items) do
  local o, from, m, h = item[1], item[2], item[3], item[4]
  WRITING = false
  local ok, r = pcall(one, KEYS[o], h, from, from + m - 1)
  if ok then
    out[i] = r
  elseif WRITING or not WROTE then
    -- an error in its writes, or before anything of the call was written: the call's error
    -- (the earlier objects' held entry writes sent first: each of them stays whole)
    pcall(flush_entries)
    error({err = tostring(r)})
  else
    -- a command of its checks refused (an ACL that refuses a read), after an earlier
    -- object's writes: its own answer, nothing of it written (as a refusal: defer)
    out[i] = defer(ARGV[from], {}, lines(ARGV[from + 1]), {'FAILED', tostring(r)})
  end
  if WRITING then WROTE = true end
end
flush_entries()
ids_flush(deltas)
return out
