-- ARGV: prefix, id, token
local key, id = KEYS[7], ARGV[2]
if not held(key, ARGV[3]) then return 0 end
local now = int(now_us())
drop_entry(key)
redis.call('ZREM', LEASES, id)
redis.call('HSET', key, 'state', 'completed', 'token', '', 'ended_at', now)
redis.call('ZADD', COMPLETED, now, id)
return 1
