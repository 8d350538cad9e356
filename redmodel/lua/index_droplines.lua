-- Drop one field's lines from index records (store.drop_index, redmodel/_registry.py).
-- KEYS[1]: the record hash of a bucket. ARGV[1]: the field name; ARGV[2..]: ids.
-- Each record loses its equality and range lines of that field (the model no longer
-- declares the index, so no writer adds them back). Answers how many records changed.
local e = 'e\31' .. ARGV[1] .. '\31'
local r = 'r\31' .. ARGV[1] .. '\31'
--! include acl_lib
-- more than one id: the HGETs and HSETs are allowed before the first write (acl_lib)
if #ARGV > 2 then
  acl('hget', KEYS[1])
  acl('hset', KEYS[1])
  acl_ok()
end
local changed = 0
for i = 2, #ARGV do
  local text = redis.call('HGET', KEYS[1], ARGV[i])
  if text then
    local kept = {}
    local dropped = false
    for line in string.gmatch(text, '[^\n]+') do
      if string.sub(line, 1, #e) == e or string.sub(line, 1, #r) == r then
        dropped = true
      else
        kept[#kept + 1] = line
      end
    end
    if dropped then
      redis.call('HSET', KEYS[1], ARGV[i], table.concat(kept, '\n'))
      changed = changed + 1
    end
  end
end
return changed
