-- KEYS: a claim hash. ARGV: value, the claim's whole text as the caller read it, and
-- optionally the text to put instead (else the claim is dropped).
-- Changes the claim only if it is still exactly that text. A repair of a claim whose owner
-- no longer holds the value first marks it (ARGV[3]: '<owner>\31' .. '0', an unconfirmed
-- claim of time 0, which any claim of the value by its owner rewrites with its own time),
-- reads the owner again, then drops the marked claim (or puts the old text back when the
-- owner holds the value by then). A claim confirmed again meanwhile (the owner gave the
-- value up and took it back) has the marked text no more and stays.
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then return {'WRONGTYPE', KEYS[1], kind, 'hash'} end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  if ARGV[3] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  else redis.call('HDEL', KEYS[1], ARGV[1]) end
  return 1
end
return 0
