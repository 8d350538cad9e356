-- Settle write ids whose replies were lost (redmodel/_wire.py): for each key in KEYS, a
-- recorded write answers {1, its first reply}; any other is fenced for ARGV[1] ms, so a
-- copy still on its way can never apply, and answers {0}.
local out = {}
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
