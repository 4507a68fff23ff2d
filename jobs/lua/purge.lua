-- ARGV: prefix, id ('' for a batch of all), batch
local ids = {}
if ARGV[2] ~= '' then
  if redis.call('ZSCORE', DEAD, ARGV[2]) then ids = {ARGV[2]} end
else
  ids = redis.call('ZRANGE', DEAD, 0, tonumber(ARGV[3]) - 1)
end
for _, id in ipairs(ids) do
  redis.call('DEL', PREFIX .. id)
  redis.call('ZREM', DEAD, id)
end
return #ids
