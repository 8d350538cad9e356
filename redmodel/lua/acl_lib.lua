-- ACL checks before a script's first write (docs/deploy.md, "ACL users"). Redis checks a
-- user's ACL at each redis.call inside a script and does not roll back the writes made
-- before a refused one, so a script that can call anything after its first write asks
-- first, with redis.acl_check_cmd (Redis 7.0+, Valkey), about every (command, key) it may
-- call from that write on; a refusal answers NOPERM with nothing written. Each pair is
-- asked once per call (a script over many objects asks a shared key once).
local ACL_SEEN = {}  -- command -> key (or '' for none, or key .. ' ' .. key2) -> true
                    -- (allowed) or false (refused): no string is built per ask
local ACL_NO     -- the first refusal of the current check: {'NOPERM', command, key}
-- asks about one command on one key (key nil: a command without a key, TIME; key2: the
-- second key of LMOVE). Never ask about a command that takes a key without one: Redis
-- 7.0.15 and Valkey 9.1.2 crash (SIGSEGV) on acl_check_cmd('set') for a user with key
-- patterns (checked: tests/test_fix29aja.py's repair scripts ask with a key)
local function acl(cmd, key, key2)
  if key == nil and string.lower(cmd) ~= 'time' then  -- (never reached by a well-formed call)
    error({err = 'ERR redmodel: ACL check of ' .. cmd .. ' without its key'})
  end
  local seen = ACL_SEEN[cmd]
  if not seen then seen = {}; ACL_SEEN[cmd] = seen end
  local k = key or ''
  if key2 then k = k .. ' ' .. key2 end
  local ok = seen[k]
  if ok == nil then
    if key2 then ok = redis.acl_check_cmd(cmd, key, key2)
    elseif key then ok = redis.acl_check_cmd(cmd, key) else ok = redis.acl_check_cmd(cmd) end
    ok = ok and true or false
    seen[k] = ok
  end
  if not ok and not ACL_NO then ACL_NO = {'NOPERM', cmd, key or ''} end
end
-- acl for each command of the list on key
local function acl_each(cmds, key)
  for i = 1, #cmds do acl(cmds[i], key) end
end
-- the refusal of the commands asked since the last call ({'NOPERM', command, key}), or nil
local function acl_refusal()
  local r = ACL_NO
  ACL_NO = nil
  return r
end
-- the refusal's text, as the error reply gives it (redis-py: NoPermissionError)
local function acl_text(r)
  return 'NOPERM this user has no permissions to run the \'' .. string.lower(r[2]) ..
    '\' command' .. (r[3] ~= '' and (' on the key \'' .. r[3] .. '\'') or '') ..
    ', which this write needs after its first change: nothing was written'
end
-- raises the refusal of the commands asked since the last call, if any (an error reply:
-- nothing was written)
local function acl_ok()
  local r = acl_refusal()
  if r then error({err = acl_text(r)}) end
end
-- acl for a command of many keys (DEL k..., MSET k v ...; pairs: a value after each key)
-- on keys[i..j], asked in one check per part of up to 500 keys; a refusal is then looked
-- up key by key, to name the key
local function acl_many(cmd, keys, i, j, paired)
  local at = i
  while at <= j do
    local last = math.min(at + 499, j)
    local args = {}
    for k = at, last do
      args[#args + 1] = keys[k]
      if paired then args[#args + 1] = '' end
    end
    if not redis.acl_check_cmd(cmd, unpack(args)) then
      for k = at, last do acl(cmd, keys[k]) end
      if not ACL_NO then ACL_NO = {'NOPERM', cmd, keys[at]} end
      return
    end
    at = last + 1
  end
end
