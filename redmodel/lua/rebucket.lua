--! include flat_lib
--! include acl_lib
-- A repair step writes more than once: every command it (or a library it includes)
-- can call is allowed before anything (acl_lib.lua), asked by name on a declared key
-- (each key is checked at the EVALSHA; a command is asked with its key and sample
-- arguments: Redis 7.0 and Valkey 9 crash on acl_check_cmd('set') without its key)
if KEYS[1] then
  for _, c in ipairs({
    {'del'}, {'dump'}, {'exists'}, {'get'}, {'mset', 'v'}, {'rename', KEYS[1]}, {'type'}
  }) do if not redis.acl_check_cmd(c[1], KEYS[1], unpack(c, 2)) then
    return redis.error_reply(acl_text({'NOPERM', c[1], KEYS[1]}))
  end end
end
-- Moving objects to another bucket count (store.migrate_buckets; redmodel/_rebucket.py).
--
-- ARGV[1] 'move' (one server: the objects of a page, each all or nothing):
--   KEYS: per object, its k source keys (the object's key, then a flat object's leaves in
--         manifest order), then its k target keys in the same order.
--   ARGV: 'move', delimiter, flat ('1' | '0'), then k of each object.
--   Checks every object first: a flat manifest that names other leaves than declared
--   answers {'CHANGED', key}, an existing target key {'TAKEN', key, type}; nothing is
--   written then. Else RENAMEs (which keeps each key's TTL) every key of every object that
--   still exists, and answers {'MOVED', how many objects}.
-- ARGV[1] 'drop' (a cluster, after the copy: one object, its keys in one slot):
--   KEYS: the object's source keys. ARGV: 'drop', then the DUMP payload each had when it
--   was copied. Deletes them only if every one still holds that payload, answering
--   {'DROPPED', 1}; {'GONE'} when none exists any more (deleted since the copy: by
--   another run of the move, or an expiry); else {'CHANGED', key} (written since the
--   copy), nothing deleted.
local mode = ARGV[1]
if mode == 'drop' then
  if #ARGV ~= #KEYS + 1 then return {'BADARG', 'payloads'} end
  if redis.call('EXISTS', unpack(KEYS)) == 0 then return {'GONE'} end
  for i = 1, #KEYS do
    if redis.call('DUMP', KEYS[i]) ~= ARGV[i + 1] then return {'CHANGED', KEYS[i]} end
  end
  redis.call('DEL', unpack(KEYS))
  return {'DROPPED', 1}
end
if mode ~= 'move' then return {'BADARG', 'mode'} end
local d, flat = ARGV[2], ARGV[3] == '1'
local groups, at = {}, 1
for j = 4, #ARGV do
  local k = tonumber(ARGV[j])
  if not k or k < 1 then return {'BADARG', 'count'} end
  groups[#groups + 1] = {at, k}
  at = at + 2 * k
end
if at - 1 ~= #KEYS then return {'BADARG', 'keys'} end
for _, g in ipairs(groups) do
  local first, k = g[1], g[2]
  local src = KEYS[first]
  if redis.call('EXISTS', src) == 1 then
    if flat then
      local want = leaves(redis.call('GET', src), src .. d)
      if #want ~= k - 1 then return {'CHANGED', src} end
      for i, leaf in ipairs(want) do
        if KEYS[first + i] ~= leaf then return {'CHANGED', src} end
      end
    end
    for i = 0, k - 1 do
      local dst = KEYS[first + k + i]
      if redis.call('EXISTS', dst) == 1 then
        return {'TAKEN', dst, redis.call('TYPE', dst)['ok']}
      end
    end
  end
end
local moved = 0
for _, g in ipairs(groups) do
  local first, k = g[1], g[2]
  if redis.call('EXISTS', KEYS[first]) == 1 then
    for i = 0, k - 1 do
      if redis.call('EXISTS', KEYS[first + i]) == 1 then
        redis.call('RENAME', KEYS[first + i], KEYS[first + k + i])
      end
    end
    moved = moved + 1
  end
end
return {'MOVED', moved}
