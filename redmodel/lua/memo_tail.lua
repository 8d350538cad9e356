-- Memo wrapper, second half: run the script, keep its reply (or its error) under the
-- memo key when it wrote, atomically with the script's own writes.
local memo_ok, memo_reply = pcall(memo_body)
if not memo_ok then
  if type(memo_reply) == 'table' and memo_reply.err then memo_reply = memo_reply.err end
  memo_reply = redis.error_reply(tostring(memo_reply))
end
if memo_wrote then
  memo_redis.call('SET', memo_key, 'M' .. cmsgpack.pack(memo_reply), 'PX', memo_ttl)
end
return memo_reply
