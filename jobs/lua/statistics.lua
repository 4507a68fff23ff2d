-- ARGV: prefix
local waiting = 0
if redis.call('EXISTS', STREAM) == 1 then
  waiting = redis.call('XLEN', STREAM) - redis.call('XPENDING', STREAM, GROUP)[1]
end
-- The next entry to deliver: the first after the group's last delivered id; its id's
-- milliseconds say when it became deliverable.
local age = -1
if waiting > 0 then
  local last = '0-0'
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', STREAM)) do
    local name, delivered
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'last-delivered-id' then delivered = group[i + 1] end
    end
    if name == GROUP then last = delivered end
  end
  local first = redis.call('XRANGE', STREAM, '(' .. last, '+', 'COUNT', 1)
  if #first > 0 then
    local t = redis.call('TIME')
    local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    age = now_ms - tonumber(string.match(first[1][1], '^(%d+)'))
    if age < 0 then age = 0 end
  end
end
return {waiting, redis.call('ZCARD', DELAYED), redis.call('ZCARD', LEASES),
  redis.call('ZCARD', COMPLETED), redis.call('ZCARD', DEAD),
  tonumber(redis.call('GET', STALLED) or '0'), age}
