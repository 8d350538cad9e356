-- Blobs saved whole (`redmodel import`'s objects of the blob layout without expiry), each
-- SET KEEPTTL as a save, refusing a key of another type: every key's TYPE is read before
-- the first SET, so a key that holds anything but a string refuses the whole call with
-- nothing written (a plain SET would replace it).
-- KEYS: the objects' keys; ARGV: their encoded values, in the same order.
-- Returns the count written, or {key, type} of the first key of another type.
-- (No ACL check needed, acl_lib.lua: its only write command is SET, and a key it may not
-- write is refused at the EVALSHA, every key being declared: a refused SET is the first.)
for i = 1, #KEYS do
  local held = redis.call('TYPE', KEYS[i])['ok']
  if held ~= 'none' and held ~= 'string' then return {KEYS[i], held} end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i], 'KEEPTTL')
end
return #KEYS
