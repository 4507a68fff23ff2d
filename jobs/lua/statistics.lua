-- ARGV: prefix
local waiting = 0
if redis.call('EXISTS', STREAM) == 1 then
  waiting = redis.call('XLEN', STREAM) - redis.call('XPENDING', STREAM, GROUP)[1]
end
return {waiting, redis.call('ZCARD', DELAYED), redis.call('ZCARD', LEASES),
  redis.call('ZCARD', COMPLETED), redis.call('ZCARD', DEAD),
  tonumber(redis.call('GET', STALLED) or '0')}
