-- A key's type, checked before a script's first write (docs/containers.md): a script that
-- met a key of another type only at a later command would fail with its earlier writes
-- applied (Lua errors roll nothing back): an item taken out of one list and never pushed to
-- the next. want(key, kind) probes the key with a read the script's callers may run
-- anyway (LLEN, HGET, SCARD, ZCARD; no TYPE, which an ACL user of containers may lack): a
-- missing key passes, a key of another kind raises an error reply naming it, nothing
-- written. Any other failure of the probe (an ACL refusal) is raised as it is.
local WANT_PROBE = {list = {'LLEN'}, hash = {'HGET', ''}, set = {'SCARD'}, zset = {'ZCARD'}}
local function want(key, kind)
  local probe = WANT_PROBE[kind]
  local r
  if probe[2] then r = redis.pcall(probe[1], key, probe[2]) else r = redis.pcall(probe[1], key) end
  if type(r) == 'table' and r.err then
    if string.sub(r.err, 1, 9) == 'WRONGTYPE' then
      error({err = 'WRONGTYPE redmodel: the key \'' .. key .. '\' holds another type of ' ..
        'value than the ' .. kind .. ' this script needs there: nothing was written'})
    end
    error(r)
  end
end
