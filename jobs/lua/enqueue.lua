-- ARGV: prefix, id, kind, payload, delay_us
local key, id = KEYS[7], ARGV[2]
if redis.call('EXISTS', key) == 1 then return 0 end
local now = now_us()
redis.call('HSET', key, 'kind', ARGV[3], 'payload', ARGV[4], 'attempt', 0,
  'enqueued_at', int(now), 'history', '[]', 'previous', '[]')
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('HSET', key, 'state', 'delayed')
  redis.call('ZADD', DELAYED, int(now + delay), id)
else
  make_ready(key, id)
end
return 1
