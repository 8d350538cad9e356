--! include flat_lib
local base = KEYS[1] .. ARGV[2]
local keep = -1
if ARGV[1] == '' then keep = redis.call('PTTL', KEYS[1]) end
local old = redis.call('GET', KEYS[1])
if old then
  local new = {}
  for i = 2, #KEYS do new[KEYS[i]] = true end
  for _, k in ipairs(leaves(old, base)) do
    if not new[k] then redis.call('DEL', k) end
  end
end
redis.call('SET', KEYS[1], ARGV[3])
local args = {}
for i = 2, #KEYS do
  args[#args + 1] = KEYS[i]
  args[#args + 1] = ARGV[i + 2]
  if #args >= 1000 then redis.call('MSET', unpack(args)); args = {} end
end
if #args > 0 then redis.call('MSET', unpack(args)) end
local ms = tonumber(ARGV[1])
if not ms and keep > 0 then ms = keep end
if ms then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ms) end
end
return 1
