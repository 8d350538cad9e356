--! include clock
-- A consumer is alive: its deadline (KEYS[1], a sorted set) becomes now + ARGV[2] ms.
redis.call('ZADD', KEYS[1], time_ms() + tonumber(ARGV[2]), ARGV[1])
return 1
