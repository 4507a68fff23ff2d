-- Shared by every job script (prepended): the keys, the clock, helpers.
local STREAM, DELAYED, LEASES = KEYS[1], KEYS[2], KEYS[3]
local COMPLETED, DEAD, STALLED = KEYS[4], KEYS[5], KEYS[6]
local PREFIX = ARGV[1]
local GROUP, CONSUMER = 'workers', 'leases'

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function int(x) return string.format('%.0f', x) end

local function ensure_group()
  if redis.call('EXISTS', STREAM) == 0 then
    redis.call('XGROUP', 'CREATE', STREAM, GROUP, '0', 'MKSTREAM')
  end
end

local function make_ready(key, id)
  ensure_group()
  local entry = redis.call('XADD', STREAM, '*', 'id', id)
  redis.call('HSET', key, 'state', 'waiting', 'entry', entry, 'token', '')
end

local function drop_entry(key)
  local entry = redis.call('HGET', key, 'entry')
  if entry and entry ~= '' then
    redis.call('XACK', STREAM, GROUP, entry)
    redis.call('XDEL', STREAM, entry)
    redis.call('HSET', key, 'entry', '')
  end
end

local function append(list, item)
  if not list or list == '' or list == '[]' then return '[' .. item .. ']' end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end

local function record(key, ended, outcome, error_type, error_message)
  local h = redis.call('HMGET', key, 'attempt', 'started_at', 'history')
  local item = cjson.encode({attempt = h[1], started_at = h[2], ended_at = int(ended),
    outcome = outcome, error_type = error_type, error_message = error_message})
  redis.call('HSET', key, 'history', append(h[3], item))
end

local function bury(key, id, now)
  redis.call('HSET', key, 'state', 'dead', 'token', '', 'ended_at', int(now))
  redis.call('ZADD', DEAD, int(now), id)
end

local function held(key, token)
  local h = redis.call('HMGET', key, 'state', 'token')
  return h[1] == 'active' and h[2] == token
end
