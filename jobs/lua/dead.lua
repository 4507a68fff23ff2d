-- ARGV: prefix, limit
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', DEAD, 0, tonumber(ARGV[2]) - 1)) do
  table.insert(out, {id, redis.call('HGETALL', PREFIX .. id)})
end
return out
