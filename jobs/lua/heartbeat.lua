-- ARGV: prefix, id, token, lease_us
local key = KEYS[7]
if not held(key, ARGV[3]) then return '' end
local expires = int(now_us() + tonumber(ARGV[4]))
redis.call('HSET', key, 'expires_at', expires)
redis.call('ZADD', LEASES, expires, ARGV[2])
return expires
