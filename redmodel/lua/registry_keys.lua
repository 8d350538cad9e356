-- Which blind-index keys a model's data is indexed under (redmodel/_indexes/_registry.py,
-- "Index keys"): the field `indexkeys` of the model's registry record, the key ids
-- (space-separated) under which its blind equality entries may be. A process that is not
-- configured with one of them would miss those entries, and let a unique value they hold
-- be taken again, so it is refused (session 38; before, it found nothing, silently).
-- KEYS[1]: the registry hash. ARGV[1]: the mode;
--   'use': ARGV[2..]: the key ids this process is configured with, newest first. Answers
--     {'MISSING', held} (nothing written) when a held id is not among them; else adds the
--     newest (its writes make entries under it) and answers {'OK', held}. A resend finds
--     the id added and answers as its first run did.
--   'begin': a run that enters every blind entry under newest id ARGV[2] starts
--     (rotate_index_key, reindex): the id is added first, so that while the run moves
--     entries to it a process without it is refused (38L F1: a run stopped midway left
--     the record naming only the older key); answers {'OK', held} with the field as it
--     was before (a resend: with the id, which 'rewritten' keeps anyway).
--   'rewritten': a whole run that entered every blind entry under newest id ARGV[2]
--     (rotate_index_key, reindex) ended: every entry is under it now, but for ids added
--     since the run read the field (ARGV[3], the field as read then: a process configured
--     with another newest key may have started meanwhile). Writes the newest id and
--     those; answers {'OK', held}. A resend writes the same.
-- A record without a schema (gone: unregistered, flushed) is not written: {'OK', ''}.
-- One write (HSET) at most, after every check: no ACL check is needed first.
if redis.call('HEXISTS', KEYS[1], 'schema') == 0 then return {'OK', ''} end
local held = redis.call('HGET', KEYS[1], 'indexkeys') or ''
local newest = ARGV[2]
if ARGV[1] == 'begin' then
  for kid in string.gmatch(held, '%S+') do
    if kid == newest then return {'OK', held} end
  end
  local added = newest
  if held ~= '' then added = held .. ' ' .. newest end
  redis.call('HSET', KEYS[1], 'indexkeys', added)
  return {'OK', held}
end
if ARGV[1] == 'use' then
  local configured = {}
  for i = 2, #ARGV do configured[ARGV[i]] = true end
  local has_newest = false
  for kid in string.gmatch(held, '%S+') do
    if not configured[kid] then return {'MISSING', held} end
    if kid == newest then has_newest = true end
  end
  if has_newest then return {'OK', held} end
  if held == '' then held = newest else held = held .. ' ' .. newest end
  redis.call('HSET', KEYS[1], 'indexkeys', held)
  return {'OK', held}
end
local before = {}
for kid in string.gmatch(ARGV[3] or '', '%S+') do before[kid] = true end
local out = {newest}
for kid in string.gmatch(held, '%S+') do
  if not before[kid] and kid ~= newest then out[#out + 1] = kid end
end
held = table.concat(out, ' ')
redis.call('HSET', KEYS[1], 'indexkeys', held)
return {'OK', held}
