--! include flat_lib
--! include acl_lib
-- The saves of many flat objects in one call (save_many's chunk), each as flat_save.lua
-- does it: all of an object's writes or none of them.
-- KEYS: per object, its manifest, its new leaves (one per value), then any other key it
-- declares (leaves it may have had). ARGV: the number of objects; '1' when the keys of
-- two objects may be one key although their manifests differ (objects of more than one
-- model), else '0'; the number of shapes, then per shape: its ttl ('' keeps the object's
-- expiry | ms), the delimiter, the manifest, its number of leaves n and of keys; then per
-- object: the number of its shape and its n values.
-- Answers one reply per object: 1 (saved), {'KEYS', missing...} (its old manifest names
-- leaves it did not declare), {'WRONGTYPE', key, type, 'string'} (its key holds another
-- type), or {'LATER'} for every object after one that was not saved (sent again after
-- it, so that two saves of one object land in their order). Nothing is written for an
-- object whose reply is not 1.
--
-- The work is batched per call, not per object (docs/performance.md, "Flat save_many"):
-- one MGET of every manifest (nil for a missing key or one of another type: one EXISTS
-- of the nil ones says whether any is of another type; only then is each read on its
-- own), then each object in order, its writes gathered into MSETs of <= 1000 arguments
-- cut between objects (an object of more writes has its own MSETs), the DEL of its stale
-- leaves and the PTTL of its expiry only where needed; an object with an expiry is
-- written at once (SET PX). An object whose keys were written or deleted earlier in the
-- call (a repeated id) first sends what is gathered, then reads its manifest afresh: it
-- sees the earlier save exactly as the one-object-at-a-time script does. Objects of one
-- model share no key unless they share their manifest key (the escaped id holds no
-- delimiter), so only manifests are tracked then; with more models, every key.
-- Gathering keeps each object whole: nothing called here can fail once something is
-- written (the reads of another type go through pcall, and a server refuses a write for
-- memory only before the script's first write), so an object's stale leaves are never
-- deleted without its MSET following.
local KEYS, ARGV = KEYS, ARGV
local count = tonumber(ARGV[1])
local every = ARGV[2] == '1'
-- per shape: its ttl in ms (nil for ''), whether it keeps the expiry (''), its delimiter,
-- manifest, number of leaves and of keys
local ms_of, keep_of, delim_of, manifest_of, n_of, k_of = {}, {}, {}, {}, {}, {}
local p = 4
for i = 1, tonumber(ARGV[3]) do
  ms_of[i], keep_of[i] = tonumber(ARGV[p]), ARGV[p] == ''
  delim_of[i], manifest_of[i] = ARGV[p + 1], ARGV[p + 2]
  n_of[i], k_of[i] = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])
  p = p + 5
end
-- per object: the position in KEYS of its manifest, in ARGV of its shape, its shape
local at_of, v_of, s_of = {}, {}, {}
local at = 1
for o = 1, count do
  local s = tonumber(ARGV[p])
  at_of[o], v_of[o], s_of[o] = at, p, s
  at = at + k_of[s]
  p = p + 1 + n_of[s]
end
local NONE = {}  -- no stale leaf (never written to)

-- the manifests as the call found them (false: missing or of another type)
local found = {}
local missing = {}
for s = 1, count, 1000 do
  local names = {}
  for o = s, math.min(s + 999, count) do names[#names + 1] = KEYS[at_of[o]] end
  local got = redis.call('MGET', unpack(names))
  for i = 1, #got do
    found[s + i - 1] = got[i]
    if not got[i] then missing[#missing + 1] = names[i] end
  end
end
local suspect = false  -- a nil manifest may be a key of another type
for s = 1, #missing, 1000 do
  if redis.call('EXISTS', unpack(missing, s, math.min(s + 999, #missing))) > 0 then
    suspect = true
    break
  end
end

local pending, m = {}, 0  -- MSET arguments gathered, not sent yet
local touched = {}  -- keys written or deleted by this call so far (manifests only unless every)
local wrote = false  -- whether the call wrote (or gathered a write) yet
local function flush()
  if m > 0 then
    redis.call('MSET', unpack(pending, 1, m))
    m = 0  -- the table is reused: only its first m entries count
  end
end

local out = {}
local blocked = false
for o = 1, count do
  if blocked then
    out[o] = {'LATER'}
  else
    local at, v, s = at_of[o], v_of[o], s_of[o]
    local n, last = n_of[s], at + k_of[s] - 1
    local key = KEYS[at]
    local fresh = touched[key]
    if every and not fresh then
      for i = at + 1, last do
        if touched[KEYS[i]] then fresh = true; break end
      end
    end
    local old, wrong
    -- after the call's first write, every command of this object is allowed before it
    -- runs (acl_lib): else it answers {'NOPERM', command, key}, nothing of it written
    if wrote then
      if fresh or (suspect and not found[o]) then acl('get', key); acl('type', key) end
      if not ms_of[s] and keep_of[s] then acl('pttl', key) end
      wrong = acl_refusal()
    end
    if wrong then
    elseif fresh then
      flush()
      old, wrong = manifest_at(key)
    elseif found[o] then
      old = found[o]
    elseif suspect then
      old, wrong = manifest_at(key)
    else
      old = false
    end
    if wrong then
      out[o] = wrong
      blocked = true
    else
      local stale = NONE
      local manifest = manifest_of[s]
      if old and old ~= manifest then
        stale = stale_leaves(old, key .. delim_of[s], n, at, last)
      end
      local ms
      if stale[1] == 'KEYS' then
        wrong = stale
      else
        ms = ms_of[s]
        if not ms and old and keep_of[s] then
          local keep = redis.call('PTTL', key)
          if keep > 0 then ms = keep end
        end
        if #stale > 0 then acl_many('del', stale, 1, #stale) end
        if ms then for i = at, at + n do acl('set', KEYS[i]) end
        else acl_many('mset', KEYS, at, at + n, true) end
        wrong = acl_refusal()
      end
      if wrong then
        out[o] = wrong
        blocked = true
      else
        wrote = true
        for _, k in ipairs(stale) do
          redis.call('DEL', k)
          if every then touched[k] = true end
        end
        if ms then
          redis.call('SET', key, manifest, 'PX', ms)
          for i = 1, n do redis.call('SET', KEYS[at + i], ARGV[v + i], 'PX', ms) end
        else
          if m + 2 * n + 2 > 1000 then flush() end
          pending[m + 1] = key
          pending[m + 2] = manifest
          m = m + 2
          for i = 1, n do
            pending[m + 1] = KEYS[at + i]
            pending[m + 2] = ARGV[v + i]
            m = m + 2
            if m >= 1000 then flush() end
          end
        end
        touched[key] = true
        if every then
          for i = at + 1, at + n do touched[KEYS[i]] = true end
        end
        out[o] = 1
      end
    end
  end
end
flush()
return out
