-- ARGV: prefix, id, token, delay_us
local key, id = KEYS[7], ARGV[2]
if not held(key, ARGV[3]) then return 0 end
drop_entry(key)
redis.call('ZREM', LEASES, id)
redis.call('HINCRBY', key, 'attempt', -1)
local delay = tonumber(ARGV[4])
if delay > 0 then
  redis.call('HSET', key, 'state', 'delayed', 'token', '')
  redis.call('ZADD', DELAYED, int(now_us() + delay), id)
else
  make_ready(key, id)
end
return 1
