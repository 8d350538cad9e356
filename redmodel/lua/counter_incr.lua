-- WindowCounter.incr (redmodel/containers/_counter.py): INCRBY and PEXPIRE of one window's
-- key, atomically. KEYS[1] the key; ARGV[1] the amount; ARGV[2] the milliseconds left in
-- the window. INCRBY runs first and raises (a key that is not a string, a string that is
-- not an integer, a sum beyond 64 bits) before anything is written: a key another program
-- wrote is refused as it is, never given an expiry that would delete it at the window's
-- end. Returns the count's exact text (GET: INCRBY's integer reply would pass through a
-- Lua double, exact only to 2**53).
--! include acl_lib
acl('pexpire', KEYS[1])  -- the commands after the first write (acl_lib)
acl('get', KEYS[1])
acl_ok()
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[1])
