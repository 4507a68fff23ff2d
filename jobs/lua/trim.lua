-- ARGV: prefix, keep_completed_us, keep_dead_us, batch
local now = now_us()
local function forget(set, keep)
  local ids = redis.call('ZRANGEBYSCORE', set, '-inf', int(now - keep), 'LIMIT', 0, ARGV[4])
  for _, id in ipairs(ids) do
    redis.call('DEL', PREFIX .. id)
    redis.call('ZREM', set, id)
  end
  return #ids
end
return {forget(COMPLETED, tonumber(ARGV[2])), forget(DEAD, tonumber(ARGV[3]))}
