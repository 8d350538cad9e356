#!lua flags=allow-oom
-- SortedSet.pop_min / pop_max (redmodel/_containers.py): pop only members the client has
-- read and decoded, so that a member is never taken out and put back.
-- KEYS[1] the sorted set, KEYS[2] its %rejected sorted set.
-- ARGV[1] 'min' or 'max'; ARGV[2] how many members the client read from that end; then
-- pairs (member, '1' it decodes | '0' it does not), as read.
--
-- Against the set as it is now: when any member of its first ARGV[2] (from that end) is
-- one the client could not decode, those members alone move to KEYS[2] with their scores
-- and nothing else changes: {'REJECTED', n}. Otherwise the longest run, from that end, of
-- members the client decoded is popped: {'POPPED', {member, score, ...}} (a member it has
-- not seen, added or moved there since the read, ends the run: the client reads again).
--! include acl_lib
--! include types_lib
local max = ARGV[1] == 'max'
local n = tonumber(ARGV[2])
local head
if max then
  head = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'REV', 'WITHSCORES')
else
  head = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')
end
local known = {}
for i = 3, #ARGV, 2 do
  known[ARGV[i]] = ARGV[i + 1]
end
local bad, members = {}, {}
for i = 1, #head, 2 do
  if known[head[i]] == '0' then
    bad[#bad + 1] = head[i + 1]
    bad[#bad + 1] = head[i]
    members[#members + 1] = head[i]
  end
end
if #members > 0 then
  -- %rejected a sorted set (or none) and ZADD and ZREM allowed, before the first write
  -- (types_lib, acl_lib)
  want(KEYS[2], 'zset')
  acl('zadd', KEYS[2])
  acl('zrem', KEYS[1])
  acl_ok()
  for i = 1, #members, 1000 do  -- unpack takes a few thousand values at most
    local last = math.min(i + 999, #members)
    redis.call('ZADD', KEYS[2], unpack(bad, 2 * i - 1, 2 * last))
    redis.call('ZREM', KEYS[1], unpack(members, i, last))
  end
  return {'REJECTED', #members}
end
local run = 0
for i = 1, #head, 2 do
  if known[head[i]] ~= '1' then
    break
  end
  run = run + 1
end
if run == 0 then
  return {'POPPED', {}}
end
return {'POPPED', redis.call(max and 'ZPOPMAX' or 'ZPOPMIN', KEYS[1], run)}
