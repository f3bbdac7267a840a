--[[
Streams: the second part of pymotia's function library. The client loads it appended to functions.lua,
as one library (one FUNCTION LOAD, reloaded together after a FUNCTION FLUSH), so that a stream change
uses the same helpers (once, int, add_delivery) and its deliveries land in the very structures claim
reads. It is not a library on its own: it has no shebang line and uses functions.lua's locals.

Key layout (see keys.py): every stream key is under "{P}:s:", a namespace no state key uses.
G, a group's name in keys, is "<byte length of stream>:<stream>:<group>" (unambiguous whatever the
names hold). An item is stored as "version|json".

    {P}:s:names          zset (scores 0): streams holding at least one item
    {P}:s:g:<stream>     zset (scores 0): the stream's groups holding at least one item
    {P}:s:i:<G>          hash: item -> "version|json"
    {P}:s:seq            hash: G -> the group's last seq (kept after its last item goes: seq never repeats)
    {P}:s:h:<G>          stream: the group's history, ids "<seq>-0", trimmed to the writer's history length
    {P}:s:log            stream: the store-wide change log, ids "<position>-0", tailed by every instance
    {P}:s:t              set: streams with stream triggers
    {P}:s:t:<stream>     set: the stream's triggers as JSON [step, group|null, item|null]
    {P}:meta             field "spos": the position of the newest change

A change is recorded with the fields t (its timestamp: the writer's clock, as every backend stamps it),
p (position), s, g, q (seq), k (kind: create/update/delete/event), and i (item), o (old value), n (new
value) when present: the same in the history and the log, so both read back as the same StreamChange.
The log's entries start with one more, w: the server's clock when written, by which the log is trimmed.
]]

local function group_name(stream, group)
  return #stream .. ':' .. stream .. ':' .. group
end

-- The server's clock, Unix seconds: the one clock every instance shares, so the log is trimmed by age
-- alike whoever writes (a change's own timestamp is the writer's clock, as for every backend).
local function server_time()
  local now = redis.call('TIME')
  return now[1] .. '.' .. string.format('%06d', tonumber(now[2])), tonumber(now[1]) + tonumber(now[2]) / 1000000
end

-- Drops the oldest changes of the log while it holds more than `keep` and they are older than `age`
-- seconds; at most TRIM_BATCH per call, so one write never pays for a long backlog at once.
local TRIM_BATCH = 100

local function trim_log(log, now, keep, age)
  local excess = redis.call('XLEN', log) - keep
  if excess <= 0 then return end
  local cut = now - age
  -- usually the oldest is still young (a busy minute): one entry read, not a batch
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if tonumber(oldest[2][2]) >= cut then return end
  local last = nil
  for _, entry in ipairs(redis.call('XRANGE', log, '-', '+', 'COUNT', math.min(excess, TRIM_BATCH))) do
    if tonumber(entry[2][2]) >= cut then break end  -- w (server time) is the first field
    last = entry[1]
  end
  if last then
    local position = tonumber(string.sub(last, 1, string.find(last, '-', 1, true) - 1))
    redis.call('XTRIM', log, 'MINID', int(position + 1) .. '-0')
  end
end

-- One delivery per stream trigger matching the change, with the payload of _events.stream_event_payload.
-- ident is the JSON members "stream_name":..,"group_id":..,"item_id":.. as the client encoded them, so
-- names read exactly as Python writes them (cjson would escape "/").
local function deliver(P, now, stream, group, item, change, ident, order_key)
  local triggers = redis.call('SMEMBERS', P .. ':s:t:' .. stream)
  if #triggers == 0 then return 0 end
  local payload = nil
  local added = 0
  for _, raw in ipairs(triggers) do
    local trigger = cjson.decode(raw)
    if (trigger[2] == cjson.null or trigger[2] == group) and (trigger[3] == cjson.null or trigger[3] == item) then
      if not payload then
        local old, new, data = change.old, change.new, change.new
        if change.kind == 'event' then new = nil elseif change.kind == 'delete' then data = old end
        payload = '{"type":"stream","event_type":"' .. change.kind .. '",' .. ident .. ',"old_value":'
          .. (old or 'null') .. ',"new_value":' .. (new or 'null') .. ',"data":' .. (data or 'null')
          .. ',"seq":' .. int(change.seq) .. ',"position":' .. int(change.position) .. ',"timestamp":'
          .. change.time
        if trace ~= '' then payload = payload .. ',"traceparent":' .. cjson.encode(trace) end
        payload = payload .. '}'
      end
      added = added + add_delivery(P, now, 'stream:' .. int(change.position) .. ':' .. trigger[1], trigger[1],
        'stream', payload, order_key)
    end
  end
  return added
end

-- Numbers a change, keeps it in the group's history and the log, makes its deliveries.
-- args (after token and ms): see stream_write / stream_send; the common tail is at `at`:
--   history, now (client clock, for deliveries), ident, order key, log keep, log age (seconds), the
--   change's timestamp (client clock, as JSON: it goes into the payload as written)
-- -> {1, position, seq, kind, old or false, timestamp, deliveries added}
local function record(P, args, at, stream, group, item, kind, old, new)
  local G = group_name(stream, group)
  local history, now, ident, order_key = args[at], args[at + 1], args[at + 2], args[at + 3]
  local keep, age, stamp = tonumber(args[at + 4]), tonumber(args[at + 5]), args[at + 6]
  local seq = redis.call('HINCRBY', P .. ':s:seq', G, 1)
  local position = redis.call('HINCRBY', P .. ':meta', 'spos', 1)
  local written, seconds = server_time()
  local fields = {'t', stamp, 'p', int(position), 's', stream, 'g', group, 'q', int(seq), 'k', kind}
  if item then fields[#fields + 1] = 'i'; fields[#fields + 1] = item end
  if old then fields[#fields + 1] = 'o'; fields[#fields + 1] = old end
  if new then fields[#fields + 1] = 'n'; fields[#fields + 1] = new end
  redis.call('XADD', P .. ':s:h:' .. G, 'MAXLEN', history, int(seq) .. '-0', unpack(fields))
  local log = P .. ':s:log'
  redis.call('XADD', log, int(position) .. '-0', 'w', written, unpack(fields))
  trim_log(log, seconds, keep, age)
  local change = {kind = kind, old = old, new = new, seq = seq, position = position, time = stamp}
  local added = deliver(P, now, stream, group, item, change, ident, order_key)
  return {1, position, seq, kind, old or false, stamp, added}
end

-- STREAM_WRITE: args token, ms, stream, group, item, mode (s(et) | d(elete)), data, if_version ('' = none),
--   then the tail of record -> record's reply | {0, actual version} (conflict) | {2} (deleting nothing)
local function stream_write(P, args)
  local stream, group, item, mode, data = args[3], args[4], args[5], args[6], args[7]
  local items = P .. ':s:i:' .. group_name(stream, group)
  local raw = redis.call('HGET', items, item)
  local version, old = 0, nil
  if raw then
    local sep = string.find(raw, '|', 1, true)
    version, old = tonumber(string.sub(raw, 1, sep - 1)), string.sub(raw, sep + 1)
  end
  if args[8] ~= '' and tonumber(args[8]) ~= version then return {0, version} end
  if mode == 'd' then
    if not raw then return {2} end
    redis.call('HDEL', items, item)
    if redis.call('EXISTS', items) == 0 then
      local groups = P .. ':s:g:' .. stream
      redis.call('ZREM', groups, group)
      if redis.call('EXISTS', groups) == 0 then redis.call('ZREM', P .. ':s:names', stream) end
    end
    return record(P, args, 9, stream, group, item, 'delete', old, nil)
  end
  redis.call('HSET', items, item, int(version + 1) .. '|' .. data)
  if not raw and redis.call('HLEN', items) == 1 then
    redis.call('ZADD', P .. ':s:g:' .. stream, 0, group)
    redis.call('ZADD', P .. ':s:names', 0, stream)
  end
  return record(P, args, 9, stream, group, item, raw and 'update' or 'create', old, data)
end

-- STREAM_SEND: args token, ms, stream, group, item ('' with has_item '0': none), has_item, event,
--   then the tail of record -> record's reply
local function stream_send(P, args)
  local item = nil
  if args[6] == '1' then item = args[5] end
  return record(P, args, 8, args[3], args[4], item, 'event', nil, args[7])
end

-- STREAM_SNAPSHOT: args stream, group, item ('' with has_item '0': the whole group), has_item
--   -> {seq, item, raw, item, raw, ...} (unordered: the client sorts)
local function stream_snapshot(keys, args)
  local P = prefix_of(keys)
  local G = group_name(args[1], args[2])
  local out = {tonumber(redis.call('HGET', P .. ':s:seq', G) or '0')}
  local items = P .. ':s:i:' .. G
  if args[4] == '1' then
    local raw = redis.call('HGET', items, args[3])
    if raw then out[2] = args[3]; out[3] = raw end
    return out
  end
  local all = redis.call('HGETALL', items)
  for i = 1, #all do out[i + 1] = all[i] end
  return out
end

-- STREAM_HISTORY: args stream, group, after, limit -> {0} (cannot be given) | {1, entries}
local function stream_history(keys, args)
  local P = prefix_of(keys)
  local G = group_name(args[1], args[2])
  local seq = tonumber(redis.call('HGET', P .. ':s:seq', G) or '0')
  local after = tonumber(args[3])
  if after < 0 or after > seq then return {0} end
  if after == seq then return {1, {}} end
  local first = int(after + 1) .. '-0'
  local entries = redis.call('XRANGE', P .. ':s:h:' .. G, first, '+', 'COUNT', math.max(tonumber(args[4]), 1))
  if #entries == 0 or entries[1][1] ~= first then return {0} end
  return {1, entries}
end

-- ADD_STREAM_TRIGGERS: args n x (stream, JSON [step, group|null, item|null]) -> 1
local function add_stream_triggers(keys, args)
  local P = prefix_of(keys)
  for i = 1, #args, 2 do
    redis.call('SADD', P .. ':s:t:' .. args[i], args[i + 1])
    redis.call('SADD', P .. ':s:t', args[i])
  end
  return 1
end

redis.register_function('motia1_stream_write', once(stream_write))
redis.register_function('motia1_stream_send', once(stream_send))
redis.register_function{function_name = 'motia1_stream_snapshot', callback = stream_snapshot, flags = {'no-writes'}}
redis.register_function{function_name = 'motia1_stream_history', callback = stream_history, flags = {'no-writes'}}
redis.register_function('motia1_add_stream_triggers', add_stream_triggers)
