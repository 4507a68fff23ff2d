-- ARGV: prefix, lease_us, attempts, worker, stall error type, stall message, tokens...
local lease_us, attempts, worker = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_us()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', int(now))) do
  redis.call('ZREM', DELAYED, id)
  make_ready(PREFIX .. id, id)
end
local expired = redis.call('ZRANGEBYSCORE', LEASES, '-inf', int(now), 'WITHSCORES')
for i = 1, #expired, 2 do
  local id = expired[i]
  local key = PREFIX .. id
  redis.call('ZREM', LEASES, id)
  redis.call('INCR', STALLED)
  record(key, tonumber(expired[i + 1]), 'stalled', ARGV[5], ARGV[6])
  drop_entry(key)
  if tonumber(redis.call('HGET', key, 'attempt')) >= attempts then
    bury(key, id, now)
  else
    make_ready(key, id)
  end
end
ensure_group()
local leased, wanted = {}, #ARGV - 6
while #leased < wanted do
  local reply = redis.call('XREADGROUP', 'GROUP', GROUP, CONSUMER, 'COUNT', wanted - #leased,
    'STREAMS', STREAM, '>')
  if not reply then break end
  for _, e in ipairs(reply[1][2]) do
    local id = e[2][2]
    local key = PREFIX .. id
    local h = redis.call('HMGET', key, 'state', 'entry', 'kind', 'payload', 'enqueued_at')
    if h[1] ~= 'waiting' or h[2] ~= e[1] then
      redis.call('XACK', STREAM, GROUP, e[1])
      redis.call('XDEL', STREAM, e[1])
    else
      local token = ARGV[7 + #leased]
      local attempt = redis.call('HINCRBY', key, 'attempt', 1)
      local expires = int(now + lease_us)
      redis.call('HSET', key, 'state', 'active', 'token', token, 'worker', worker,
        'started_at', int(now), 'expires_at', expires)
      redis.call('ZADD', LEASES, expires, id)
      table.insert(leased, {id, h[3], h[4], attempt, h[5], token, expires})
    end
  end
end
local next_due = -1
for _, set in ipairs({DELAYED, LEASES}) do
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first > 0 and (next_due < 0 or tonumber(first[2]) < next_due) then
    next_due = tonumber(first[2])
  end
end
local info, last = redis.call('XINFO', 'STREAM', STREAM), '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
return {leased, int(now), int(next_due), last}
