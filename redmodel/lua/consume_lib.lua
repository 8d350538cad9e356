-- Reliable consumption of a list (redmodel/_consume.py). Every consume_* script gets
-- KEYS[1] the queue (a list), KEYS[2] the consumers (a sorted set: name -> deadline, in
-- server milliseconds), KEYS[3] the redeliveries (a hash: member -> "waiting:returned")
-- and, where there is one, KEYS[4] the calling consumer's in-flight list.
--
-- "returned" counts how often a copy of a member was handed out again after a delivery
-- that was not acknowledged (returned to the queue, or taken back by its consumer);
-- "waiting" how many of those copies sit in the queue and have not been taken again.
-- The delivery count of a copy is 1 + returned; counts are kept per member, so equal
-- members share them.

--! include acl_lib
--! include types_lib
-- the commands of marks/set_marks (HGET, HSET, HDEL of the redeliveries), asked of the ACL
-- before a script's first write (acl_lib)
local function acl_marks()
  acl('hget', KEYS[3])
  acl('hset', KEYS[3])
  acl('hdel', KEYS[3])
end
-- the types of the keys every consume_* script reads or writes (KEYS[1] the queue, a
-- list; KEYS[2] the consumers, a sorted set; KEYS[3] the marks, a hash; KEYS[4], where
-- given, an in-flight list), before its first write (types_lib)
local function want_consume_keys()
  want(KEYS[1], 'list')
  want(KEYS[2], 'zset')
  want(KEYS[3], 'hash')
  if KEYS[4] then want(KEYS[4], 'list') end
end
-- and those of return_all(key)
local function acl_return_all(key)
  acl('lmove', key, KEYS[1])
  acl_marks()
end
local function marks(member)
  local found = redis.call('HGET', KEYS[3], member)
  if not found then return 0, 0 end
  local waiting, returned = string.match(found, '^(%d+):(%d+)$')
  -- only these scripts write marks; one of another shape (written by hand) counts as
  -- none, so that it cannot fail a script after its first write (it is overwritten)
  if not waiting then return 0, 0 end
  return tonumber(waiting), tonumber(returned)
end

local function set_marks(member, waiting, returned)
  if returned == 0 then
    redis.call('HDEL', KEYS[3], member)
  else
    redis.call('HSET', KEYS[3], member, waiting .. ':' .. returned)
  end
end

-- a copy goes back to the head of the queue after an unacknowledged delivery
local function returned_to_queue(member)
  local waiting, returned = marks(member)
  set_marks(member, waiting + 1, returned + 1)
end

-- a consumer takes back a copy it held; its delivery count
local function taken_back(member)
  local waiting, returned = marks(member)
  set_marks(member, waiting, returned + 1)
  return returned + 2
end

-- a copy was taken from the queue; its delivery count
local function taken(member)
  local waiting, returned = marks(member)
  if waiting > 0 then set_marks(member, waiting - 1, returned) end
  return returned + 1
end

-- a copy was acknowledged: the count goes once no returned copy waits in the queue
local function acknowledged(member)
  local waiting, returned = marks(member)
  if returned > 0 and waiting == 0 then redis.call('HDEL', KEYS[3], member) end
end

local function heartbeat(name, ttl, now)
  redis.call('ZADD', KEYS[2], now + ttl, name)
end

-- up to `limit` consumers other than `name` whose deadline has passed
local function stale(name, now, limit)
  local found = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now, 'LIMIT', 0, limit + 1)
  local out = {}
  for _, other in ipairs(found) do
    if other ~= name and #out < limit then out[#out + 1] = other end
  end
  return out
end

-- every item of the in-flight list `key` back to the head of the queue, in the order it
-- was taken (the oldest ends up first); how many
local function return_all(key)
  local n = 0
  while true do
    local member = redis.call('LMOVE', key, KEYS[1], 'RIGHT', 'LEFT')
    if not member then return n end
    returned_to_queue(member)
    n = n + 1
  end
end
