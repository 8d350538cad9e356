-- Settle write ids whose replies were lost (redmodel/_wire.py): for each key in KEYS, a
-- recorded write answers {1, its first reply}; any other is fenced for ARGV[1] ms, so a
-- copy still on its way can never apply, and answers {0}.
local out = {}
-- more than one key: every GET and SET is allowed before the first SET (the ACL checks
-- each command a script calls; a write is never rolled back): else NOPERM, nothing written
if #KEYS > 1 then
  for i = 1, #KEYS do
    for _, cmd in ipairs({'get', 'set'}) do
      if not redis.acl_check_cmd(cmd, KEYS[i]) then
        return redis.error_reply('NOPERM this user has no permissions to run the \'' .. cmd ..
          '\' command on the key \'' .. KEYS[i] .. '\': nothing was written')
      end
    end
  end
end
for i = 1, #KEYS do
  local seen = redis.call('GET', KEYS[i])
  if seen and string.sub(seen, 1, 1) == 'R' then
    out[i] = {1, cmsgpack.unpack(string.sub(seen, 2))}
  else
    if not seen then redis.call('SET', KEYS[i], 'F', 'PX', ARGV[1]) end
    out[i] = {0}
  end
end
return out
