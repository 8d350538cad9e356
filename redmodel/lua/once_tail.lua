-- Exactly-once wrapper, second half: run the write, record its reply (or its error) with
-- the write id, atomically with the write itself.
local once_ok, once_reply = pcall(once_body)
if not once_ok then
  if type(once_reply) == 'table' and once_reply.err then once_reply = once_reply.err end
  once_reply = redis.error_reply(tostring(once_reply))
end
redis.call('SET', once_key, 'R' .. cmsgpack.pack(once_reply), 'PX', once_ttl)
return once_reply
