-- ARGV: prefix, id, token, attempts, delay_us, error type, error message
local key, id = KEYS[7], ARGV[2]
if not held(key, ARGV[3]) then return -1 end
local now = now_us()
record(key, now, 'failed', ARGV[6], ARGV[7])
drop_entry(key)
redis.call('ZREM', LEASES, id)
if tonumber(redis.call('HGET', key, 'attempt')) >= tonumber(ARGV[4]) then
  bury(key, id, now)
  return 1
end
redis.call('HSET', key, 'state', 'delayed', 'token', '')
redis.call('ZADD', DELAYED, int(now + tonumber(ARGV[5])), id)
return 0
