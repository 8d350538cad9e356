-- update of some fields of an unindexed hash (Store.update, a partial save), only if the
-- object exists. KEYS: the object. ARGV: the number of field/value pairs n, '1' if the
-- model may be empty (then ARGV[3], the marker field, keeps a hash whose every field is
-- removed), optionally followed by a space and a TTL in milliseconds (a tracked partial
-- save with an expiry: PEXPIRE after the writes, in this script, as a whole save sets
-- it), the marker, n pairs, then the fields to remove. Replies 1, or 0 with nothing
-- written when the object is missing.
-- The marker needs no count of the fields (HLEN, which the hash models ACL rule does not
-- grant): an update that sets a field leaves the hash non-empty, so it removes the marker;
-- one that only removes fields writes the marker first (the hash never empties, so keeps
-- its expiry) and leaves it, beside any fields still there, until a write sets a field
-- (readers skip the marker).
-- Written without parts_lib's functions (defining them costs every call): the common
-- case (no removal, no marker, no TTL, at most 1,000 values) is one HSET; lists longer
-- than that go in parts of at most 1,000 values (Lua's unpack limit), as parts_lib does.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = #ARGV
local last = 3 + 2 * tonumber(ARGV[1])
local flags = ARGV[2]
local keep = string.sub(flags, 1, 1) == '1'
local ttl = #flags > 2 and string.sub(flags, 3) or nil
if last == n and n <= 1003 and not keep and not ttl then
  if n > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, n)) end
  return 1
end
-- the commands after the first write (an HSET, else an HDEL) are allowed before it runs
-- (acl_lib.lua says why; asked inline: no function made per call)
-- (with keep: the HDEL of the marker after a set, or of the fields after the marker;
-- with a TTL: its PEXPIRE after any write)
local writes = last > 3 or n > last
local refused = ((n > last and (keep or last > 3) or keep and last > 3)
    and not redis.acl_check_cmd('hdel', KEYS[1])) and 'hdel'
  or (ttl and writes and not redis.acl_check_cmd('pexpire', KEYS[1])) and 'pexpire'
if refused then
  return redis.error_reply('NOPERM this user has no permissions to run the \'' .. refused ..
    '\' command on the key \'' .. KEYS[1] .. '\', which this write needs after its first ' ..
    'change: nothing was written')
end
if keep and last == 3 and n > last then
  redis.call('HSET', KEYS[1], ARGV[3], '')
end
local i = 4
while i <= last do  -- parts of 1,000 values: even, so a pair never straddles two
  local k = i + 999
  if k > last then k = last end
  redis.call('HSET', KEYS[1], unpack(ARGV, i, k))
  i = k + 1
end
i = last + 1
while i <= n do
  local k = i + 999
  if k > n then k = n end
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, k))
  i = k + 1
end
if keep and last > 3 then redis.call('HDEL', KEYS[1], ARGV[3]) end
if ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
