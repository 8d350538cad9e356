--! include index_lib
return sweep(ARGV[1], ARGV[2], ARGV[3], KEYS[1], KEYS[2], KEYS[3])
