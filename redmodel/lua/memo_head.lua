-- Memo wrapper, first half (composed around a resendable maintenance script by
-- redmodel/_plan.py memo_variant; docs/failures.md "Resent maintenance calls"). KEYS[1] is
-- the call's memo key (a key of its own, new per call, under the model's index root in the
-- slot of the script's keys) and ARGV[1] its expiry in ms; the wrapped script sees the
-- remaining keys and arguments as its KEYS and ARGV. A resend of the call (its first
-- copy ran, its reply was lost) finds the memo and answers the first run's reply again,
-- writing nothing: a count or a report stays the first run's.
local memo_key, memo_ttl = KEYS[1], ARGV[1]
-- everything the memo needs is asked before the script's first write: a refusal, or a
-- planted key of another type there, is an error with nothing written
for _, memo_cmd in ipairs({{'type'}, {'get'}, {'set', 'v'}}) do
  if not redis.acl_check_cmd(memo_cmd[1], memo_key, unpack(memo_cmd, 2)) then
    return redis.error_reply('NOPERM this user has no permissions to run the \'' ..
      memo_cmd[1] .. '\' command on the key \'' .. memo_key .. '\', which this call needs ' ..
      'for its memo (allow the model\'s index keys): nothing was written')
  end
end
local memo_type = redis.call('TYPE', memo_key)['ok']
if memo_type == 'string' then
  local memo_seen = redis.call('GET', memo_key)
  if string.sub(memo_seen, 1, 1) == 'M' then
    return cmsgpack.unpack(string.sub(memo_seen, 2))
  end
end
if memo_type ~= 'none' then
  return redis.error_reply('WRONGTYPE the memo key \'' .. memo_key .. '\' holds a ' ..
    memo_type .. ' that redmodel did not write (a key of its own, new per call): ' ..
    'nothing was written')
end
if not tonumber(memo_ttl) then
  return redis.error_reply('ERR redmodel: memo expiry ' .. tostring(memo_ttl))
end
-- the memo is kept only when the script wrote (a call that changed nothing leaves no key:
-- its resend runs as a first run, and nothing of the first was applied): the script's
-- redis.call and redis.pcall go through a table that notes any command not in this list
-- of reads (an unlisted read only makes a memo that was not needed)
local MEMO_READS = {}
for _, c in ipairs({'dump', 'exists', 'expiretime', 'get', 'getrange', 'hexists', 'hget',
    'hgetall', 'hkeys', 'hlen', 'hmget', 'hscan', 'hstrlen', 'hvals', 'lindex', 'llen',
    'lrange', 'mget', 'object', 'pexpiretime', 'pttl', 'scard', 'sismember', 'smembers',
    'smismember', 'srandmember', 'sscan', 'strlen', 'time', 'ttl', 'type', 'zcard',
    'zcount', 'zlexcount', 'zmscore', 'zrange', 'zrangebylex', 'zrangebyscore', 'zrank',
    'zrevrange', 'zrevrangebylex', 'zrevrangebyscore', 'zrevrank', 'zscan', 'zscore'}) do
  MEMO_READS[c] = true
end
local memo_wrote = false
local memo_redis = redis
local function memo_note(cmd)
  if not memo_wrote and not MEMO_READS[string.lower(tostring(cmd))] then memo_wrote = true end
end
local redis = setmetatable({
  call = function(cmd, ...) memo_note(cmd); return memo_redis.call(cmd, ...) end,
  pcall = function(cmd, ...) memo_note(cmd); return memo_redis.pcall(cmd, ...) end,
}, {__index = memo_redis})
--! include shift_lib
local KEYS, ARGV = shift_args(KEYS, 1), shift_args(ARGV, 1)
