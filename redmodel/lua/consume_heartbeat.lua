#!lua flags=allow-oom
--! include clock
--! include types_lib
-- A consumer is alive: its deadline (KEYS[1], a sorted set) becomes now + ARGV[2] ms, if
-- it is registered (XX). A heartbeat never registers a consumer: one that arrives after
-- its consumer left, or was taken for dead, changes nothing. Returns 1 if registered.
want(KEYS[1], 'zset')  -- named, before the write (types_lib)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', time_ms() + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
