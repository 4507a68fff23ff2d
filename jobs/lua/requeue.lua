-- ARGV: prefix, id
local key, id = KEYS[7], ARGV[2]
local h = redis.call('HMGET', key, 'state', 'history', 'previous')
if h[1] ~= 'dead' then return 0 end
redis.call('ZREM', DEAD, id)
redis.call('HSET', key, 'attempt', 0, 'history', '[]', 'previous', append(h[3], h[2]),
  'ended_at', '')
make_ready(key, id)
return 1
