#!lua name=motia1

--[[
pymotia's Redis function library (loaded with FUNCTION LOAD REPLACE; see keys.py for the key layout).
streams.lua (the stream functions) is appended to this file and loaded with it as one library.

Every function is called with one key, "{P}:meta", whose hash tag {P} every other key of the store
shares: each call touches one hash slot, so it runs atomically on a standalone server and on Redis
Cluster alike. Other key names are derived from it (P = KEYS[1] without ":meta").

A stored record is the string "version|expires_at|token|data": expires_at is empty for a permanent key
(else Unix seconds as the client formatted them), token identifies the write that stored it (so a
compare-and-set is immune to a delete and re-create in between), data is the JSON value.
Time always comes from the client ("now"), so every backend agrees on expiry under a test clock.
]]

local function prefix_of(keys)
  return string.sub(keys[1], 1, -6)
end

local function scope_keys(P, scope)
  return P .. ':k:' .. scope, P .. ':v:' .. scope, P .. ':x:' .. scope
end

local function parse(raw)
  local a = string.find(raw, '|', 1, true)
  local b = string.find(raw, '|', a + 1, true)
  local c = string.find(raw, '|', b + 1, true)
  return tonumber(string.sub(raw, 1, a - 1)), string.sub(raw, a + 1, b - 1), string.sub(raw, b + 1, c - 1),
    string.sub(raw, c + 1)
end

local function int(n)
  return string.format('%.0f', n)
end

-- Change events: appended to the stream "{P}:events" in the same call as the write (the outbox).
local function events_on(P)
  return redis.call('HGET', P .. ':meta', 'events') == '1'
end

-- The traceparent of the write being applied (its client's trace context, the last argument of every
-- write: see once), kept in its events so their deliveries continue that trace; '' without one.
local trace = ''

local function emit(P, on, now, event_type, scope, key, old, new, version)
  if not on then return end
  local seq = redis.call('HINCRBY', P .. ':meta', 'seq', 1)
  local tail = '}'
  if trace ~= '' then tail = ',"traceparent":' .. cjson.encode(trace) .. '}' end
  local payload = '{"type":"state","event_type":"' .. event_type .. '","group_id":' .. cjson.encode(scope)
    .. ',"item_id":' .. cjson.encode(key) .. ',"old_value":' .. (old or 'null') .. ',"new_value":'
    .. (new or 'null') .. ',"version":' .. int(version) .. ',"timestamp":' .. now .. ',"seq":' .. int(seq) .. tail
  redis.call('XADD', P .. ':events', '*', 's', scope, 'k', key, 'q', int(seq), 'p', payload)
end

local function remove(P, scope, key, has_expiry)
  local k, v, x = scope_keys(P, scope)
  redis.call('HDEL', v, key)
  redis.call('ZREM', k, key)
  if has_expiry then
    redis.call('ZREM', x, key)
    if redis.call('EXISTS', x) == 0 then redis.call('ZREM', P .. ':xs', scope) end
  end
  if redis.call('EXISTS', k) == 0 then redis.call('ZREM', P .. ':scopes', scope) end
end

local function store(P, scope, key, version, expires_at, token, data, had_expiry, existed)
  local k, v, x = scope_keys(P, scope)
  redis.call('HSET', v, key, int(version) .. '|' .. expires_at .. '|' .. token .. '|' .. data)
  if not existed and redis.call('ZADD', k, 0, key) == 1 and redis.call('ZCARD', k) == 1 then
    redis.call('ZADD', P .. ':scopes', 0, scope)
  end
  if expires_at ~= '' then
    redis.call('ZADD', x, tonumber(expires_at), key)
    redis.call('ZADD', P .. ':xs', 0, scope)
  elseif had_expiry then
    redis.call('ZREM', x, key)
    if redis.call('EXISTS', x) == 0 then redis.call('ZREM', P .. ':xs', scope) end
  end
end

-- The live record of (scope, key) as {version, expires_at, token, data}, or nil. An expired record is
-- removed here, firing its one "expired" event, so it is invisible from the instant it expires.
local function load(P, on, now, scope, key)
  local _, v = scope_keys(P, scope)
  local raw = redis.call('HGET', v, key)
  if not raw then return nil end
  local version, expires_at, token, data = parse(raw)
  if expires_at ~= '' and tonumber(expires_at) <= tonumber(now) then
    remove(P, scope, key, true)
    emit(P, on, now, 'expired', scope, key, data, nil, version)
    return nil
  end
  return {version, expires_at, token, data}
end

local function write(P, on, now, scope, key, current, data, expires_at, token)
  local version = 1
  local old = nil
  local had_expiry = false
  if current then
    version = current[1] + 1
    old = current[4]
    had_expiry = current[2] ~= ''
  end
  store(P, scope, key, version, expires_at, token, data, had_expiry, current ~= nil)
  emit(P, on, now, old and 'updated' or 'created', scope, key, old, data, version)
  return version
end

-- GET: args scope, key, now -> the raw record or nil
local function get(keys, args)
  trace = ''  -- an expiry found by a read is no writer's
  local P = prefix_of(keys)
  local current = load(P, events_on(P), args[3], args[1], args[2])
  if not current then return false end
  return int(current[1]) .. '|' .. current[2] .. '|' .. current[3] .. '|' .. current[4]
end

-- Writes are applied at most once per token. Each takes (token, marker lifetime in ms) as its first two
-- arguments; its reply is kept under "{P}:w:<token>" for that long, and a call repeating the token (a
-- client retrying after a lost connection) gets that reply instead of a second application, even if
-- other writers changed the key in between. The client appends the write's traceparent ('' for none) as
-- the last argument; it is taken off here, so handlers see their own arguments only.
local function once(handler)
  return function(keys, args)
    trace = table.remove(args)
    local P = prefix_of(keys)
    local marker = P .. ':w:' .. args[1]
    local seen = redis.call('GET', marker)
    if seen then trace = '' return cmsgpack.unpack(seen) end
    local reply = handler(P, args)
    trace = ''
    redis.call('SET', marker, cmsgpack.pack(reply), 'PX', args[2])
    return reply
  end
end

-- SET: args token, ms, scope, key, data, expires_at, if_version ('' = none), now
--   -> {1, version, old data or nil} | {0, actual version} (conflict)
local function set(P, args)
  local scope, key, now = args[3], args[4], args[8]
  local on = events_on(P)
  local current = load(P, on, now, scope, key)
  if args[7] ~= '' then
    local actual = current and current[1] or 0
    if actual ~= tonumber(args[7]) then return {0, actual} end
  end
  local version = write(P, on, now, scope, key, current, args[5], args[6], args[1])
  return {1, version, current and current[4] or false}
end

-- CAS (compare-and-set, for update): args token, ms, scope, key, expected version (0: absent),
--   expected token, data, expires_at, now -> {1, version} | {0, raw current or nil}
local function cas(P, args)
  local scope, key, now = args[3], args[4], args[9]
  local on = events_on(P)
  local current = load(P, on, now, scope, key)
  local matches
  if current then
    matches = current[1] == tonumber(args[5]) and current[3] == args[6]
  else
    matches = args[5] == '0'
  end
  if not matches then
    if not current then return {0, false} end
    return {0, int(current[1]) .. '|' .. current[2] .. '|' .. current[3] .. '|' .. current[4]}
  end
  return {1, write(P, on, now, scope, key, current, args[7], args[8], args[1])}
end

-- DELETE: args token, ms, scope, key, if_version ('' = none), now
--   -> {1, old data or nil} | {0, actual version}
local function delete(P, args)
  local scope, key, now = args[3], args[4], args[6]
  local on = events_on(P)
  local current = load(P, on, now, scope, key)
  if args[5] ~= '' then
    local actual = current and current[1] or 0
    if actual ~= tonumber(args[5]) then return {0, actual} end
  end
  if not current then return {1, false} end
  remove(P, scope, key, current[2] ~= '')
  emit(P, on, now, 'deleted', scope, key, current[4], nil, current[1])
  return {1, current[4]}
end

-- CLEAR: args token, ms, scope, now -> how many live keys were removed (each fires deleted, or expired)
local function clear(P, args)
  local scope, now = args[3], tonumber(args[4])
  local k, v, x = scope_keys(P, scope)
  local on = events_on(P)
  local live = 0
  local names = redis.call('ZRANGE', k, 0, -1)
  if on then
    for _, key in ipairs(names) do
      local version, expires_at, _, data = parse(redis.call('HGET', v, key))
      local expired = expires_at ~= '' and tonumber(expires_at) <= now
      if not expired then live = live + 1 end
      emit(P, on, args[4], expired and 'expired' or 'deleted', scope, key, data, nil, version)
    end
  else
    live = #names - redis.call('ZCOUNT', x, '-inf', now)
  end
  redis.call('DEL', k, v, x)
  redis.call('ZREM', P .. ':scopes', scope)
  redis.call('ZREM', P .. ':xs', scope)
  return live
end

-- ITEMS: args scope, lex min, lex max, limit (0: all), now -> {key, raw, key, raw, ...} in key order.
-- Reads a chunk of the key index at a time and skips expired keys, so a page costs about the page.
local function items(keys, args)
  local P = prefix_of(keys)
  local k, v = scope_keys(P, args[1])
  local low, high, limit, now = args[2], args[3], tonumber(args[4]), tonumber(args[5])
  local out = {}
  local found = 0
  local chunk = limit > 0 and limit or 1000
  while true do
    local names = redis.call('ZRANGE', k, low, high, 'BYLEX', 'LIMIT', 0, chunk)
    if #names == 0 then break end
    local raws = redis.call('HMGET', v, unpack(names))
    for i, key in ipairs(names) do
      local _, expires_at = parse(raws[i])
      if expires_at == '' or tonumber(expires_at) > now then
        out[#out + 1] = key
        out[#out + 1] = raws[i]
        found = found + 1
        if limit > 0 and found >= limit then return out end
      end
    end
    if #names < chunk then break end
    low = '(' .. names[#names]
  end
  return out
end

-- COUNT: args scope, now -> live keys in scope
local function count(keys, args)
  local P = prefix_of(keys)
  local k, _, x = scope_keys(P, args[1])
  return redis.call('ZCARD', k) - redis.call('ZCOUNT', x, '-inf', args[2])
end

-- SCOPES: args now -> scopes holding a live key, in order
local function scopes(keys, args)
  local P = prefix_of(keys)
  local out = {}
  for _, scope in ipairs(redis.call('ZRANGE', P .. ':scopes', 0, -1)) do
    local k, _, x = scope_keys(P, scope)
    if redis.call('ZCARD', k) > redis.call('ZCOUNT', x, '-inf', args[1]) then out[#out + 1] = scope end
  end
  return out
end

-- PURGE: args now, limit -> how many expired keys were removed (each fires expired)
local function purge(keys, args)
  trace = ''
  local P = prefix_of(keys)
  local now, limit = args[1], tonumber(args[2])
  local on = events_on(P)
  local removed = 0
  for _, scope in ipairs(redis.call('ZRANGE', P .. ':xs', 0, -1)) do
    local _, v, x = scope_keys(P, scope)
    for _, key in ipairs(redis.call('ZRANGE', x, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit - removed)) do
      local version, _, _, data = parse(redis.call('HGET', v, key))
      remove(P, scope, key, true)
      emit(P, on, now, 'expired', scope, key, data, nil, version)
      removed = removed + 1
    end
    if removed >= limit then break end
  end
  return removed
end

-- COMMIT (a transaction): args token, ms, now, n, then n x (scope, key, expected version), m, then
--   m x (scope, key, mode, data, expires_at) with mode d(elete) t(tl given) k(eep expiry) p(ermanent)
--   -> {1} | {0, scope, key, expected, actual}
local function commit(P, args)
  local token, now = args[1], args[3]
  local on = events_on(P)
  local n = tonumber(args[4])
  for i = 0, n - 1 do
    local scope, key, expected = args[5 + i * 3], args[6 + i * 3], tonumber(args[7 + i * 3])
    local current = load(P, on, now, scope, key)
    local actual = current and current[1] or 0
    if actual ~= expected then return {0, scope, key, expected, actual} end
  end
  local base = 5 + n * 3
  local m = tonumber(args[base])
  for i = 0, m - 1 do
    local at = base + 1 + i * 5
    local scope, key, mode, data, expires_at = args[at], args[at + 1], args[at + 2], args[at + 3], args[at + 4]
    local current = load(P, on, now, scope, key)
    if mode == 'd' then
      if current then
        remove(P, scope, key, current[2] ~= '')
        emit(P, on, now, 'deleted', scope, key, current[4], nil, current[1])
      end
    else
      if mode == 'k' then expires_at = current and current[2] or '' elseif mode == 'p' then expires_at = '' end
      write(P, on, now, scope, key, current, data, expires_at, token .. ':' .. i)
    end
  end
  return {1}
end

-- RESTORE: args token, ms, scope, key, data, version ('' = next), expires_at, replace ('1'/'0'), now
--   -> 1 | 0
local function restore(P, args)
  local scope, key, now = args[3], args[4], args[9]
  local on = events_on(P)
  local current = load(P, on, now, scope, key)
  if current and args[8] ~= '1' then return 0 end
  local version = current and current[1] + 1 or 1
  if args[6] ~= '' then version = tonumber(args[6]) end
  local old = current and current[4] or nil
  store(P, scope, key, version, args[7], args[1], args[5], current and current[2] ~= '', current ~= nil)
  emit(P, on, now, old and 'updated' or 'created', scope, key, old, args[5], version)
  return 1
end

-- Deliveries ---------------------------------------------------------------------------------------
-- Dead letters: "{P}:dl" hash id -> JSON [id, step, kind, payload, attempts, error, created, failed,
-- first error], "{P}:dlz" zset of ids scored by failure time (ties in id order: the order every backend
-- pages them in). Stores written before issue 18 kept them in the list "{P}:dead" (and "{P}:deadids"):
-- every function that touches dead letters moves those over first, once.
local function dead_migrate(P)
  if redis.call('EXISTS', P .. ':dead') == 0 then return end
  for _, raw in ipairs(redis.call('LRANGE', P .. ':dead', 0, -1)) do
    local letter = cjson.decode(raw)
    redis.call('HSET', P .. ':dl', letter[1], raw)
    redis.call('ZADD', P .. ':dlz', tonumber(letter[8]), letter[1])
  end
  redis.call('DEL', P .. ':dead', P .. ':deadids')
end

-- Keep a dead letter (replacing one of its id); failed is the client's "now" string, kept exact.
local function dead_put(P, id, step, kind, payload, attempts, error, created, failed, first_error)
  redis.call('HSET', P .. ':dl', id, cjson.encode({id, step, kind, payload, attempts, error, created, failed,
    first_error}))
  redis.call('ZADD', P .. ':dlz', tonumber(failed), id)
end

-- "{P}:d:<id>" hash per delivery; "{P}:due:<step>" zset of claimable members scored by the time they
-- become claimable (available, or lease end); deliveries sharing an order key form a chain: only the
-- head ("{P}:head:<step>\n<order key>") is in the due set, the rest wait in "{P}:chain:<step>\n<key>".
-- A key with more than one order slot (its deliveries' "slots" field) keeps up to that many in the due
-- set instead: "{P}:slots:<step>\n<key>" counts them, the rest wait in "{P}:schain:<step>\n<key>".

-- The gate (head id, or count of due members) and the chain of an order key.
local function order_keys(P, step, order_key, slots)
  local suffix = step .. '\n' .. order_key
  if slots > 1 then return P .. ':slots:' .. suffix, P .. ':schain:' .. suffix end
  return P .. ':head:' .. suffix, P .. ':chain:' .. suffix
end

-- One due member of an order key left without a successor: the gate lets one more in.
local function open_gate(gate, slots)
  if slots > 1 and redis.call('DECR', gate) > 0 then return end
  redis.call('DEL', gate)
end

-- A delivery with a delay keeps when it becomes available ("avail"): a chain's next head waits for it.
local function add_delivery(P, now, id, step, kind, payload, order_key, available, slots)
  local d = P .. ':d:' .. id
  if redis.call('EXISTS', d) == 1 then return 0 end
  available = available or now
  slots = tonumber(slots or 1)
  local member = string.format('%016.0f', redis.call('HINCRBY', P .. ':meta', 'dseq', 1)) .. '|' .. id
  redis.call('HSET', d, 'step', step, 'kind', kind, 'payload', payload, 'attempts', 0, 'created', now,
    'member', member, 'order', order_key)
  if tonumber(available) > tonumber(now) then redis.call('HSET', d, 'avail', available) end
  redis.call('HINCRBY', P .. ':pending', step, 1)
  if order_key ~= '' then
    local gate, chain = order_keys(P, step, order_key, slots)
    if slots > 1 then
      redis.call('HSET', d, 'slots', slots)
      if tonumber(redis.call('GET', gate) or '0') >= slots then
        redis.call('RPUSH', chain, id)
        return 1
      end
      redis.call('INCR', gate)
    else
      if redis.call('EXISTS', gate) == 1 then
        redis.call('RPUSH', chain, id)
        return 1
      end
      redis.call('SET', gate, id)
    end
  end
  redis.call('ZADD', P .. ':due:' .. step, tonumber(available), member)
  return 1
end

local function remove_delivery(P, now, id, fields)
  local step, order_key = fields.step, fields.order
  redis.call('DEL', P .. ':d:' .. id)
  redis.call('ZREM', P .. ':due:' .. step, fields.member)
  if redis.call('HINCRBY', P .. ':pending', step, -1) <= 0 then redis.call('HDEL', P .. ':pending', step) end
  if order_key ~= '' then
    local slots = tonumber(fields.slots or 1)
    local gate, chain = order_keys(P, step, order_key, slots)
    local next_id = redis.call('LPOP', chain)
    if next_id then
      if slots == 1 then redis.call('SET', gate, next_id) end
      local f = redis.call('HMGET', P .. ':d:' .. next_id, 'member', 'avail')
      redis.call('ZADD', P .. ':due:' .. step, math.max(tonumber(now), tonumber(f[2] or now)), f[1])
    else
      open_gate(gate, slots)
    end
  end
end

local function held(P, id, owner)
  local raw = redis.call('HGETALL', P .. ':d:' .. id)
  if #raw == 0 then return nil end
  local fields = {}
  for i = 1, #raw, 2 do fields[raw[i]] = raw[i + 1] end
  if fields.owner ~= owner then return nil end
  return fields
end

-- ENABLE_EVENTS: no args
local function enable_events(keys, args)
  redis.call('HSET', prefix_of(keys) .. ':meta', 'events', '1')
  return 1
end

-- DISPATCH: args limit, now, then subscriptions as JSON [step, scope|null, key|null]
--   -> {events consumed, deliveries added}
local function dispatch(keys, args)
  local P = prefix_of(keys)
  local limit, now = tonumber(args[1]), args[2]
  for i = 3, #args do redis.call('SADD', P .. ':subs', args[i]) end
  local entries = redis.call('XRANGE', P .. ':events', '-', '+', 'COUNT', limit)
  if #entries == 0 then return {0, 0} end
  local subscriptions = {}
  for _, raw in ipairs(redis.call('SMEMBERS', P .. ':subs')) do subscriptions[#subscriptions + 1] = cjson.decode(raw) end
  local added = 0
  local ids = {}
  for _, entry in ipairs(entries) do
    ids[#ids + 1] = entry[1]
    local f = {}
    for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
    for _, sub in ipairs(subscriptions) do
      -- A subscription to any scope skips the runtime's own scopes ("__motia.", state/values.py).
      local scoped = (sub[2] == cjson.null and string.sub(f.s, 1, 8) ~= '__motia.') or sub[2] == f.s
      if scoped and (sub[3] == cjson.null or sub[3] == f.k) then
        added = added + add_delivery(P, now, 'state:' .. f.q .. ':' .. sub[1], sub[1], 'state', f.p,
          cjson.encode({f.s, f.k}))
      end
    end
  end
  redis.call('XDEL', P .. ':events', unpack(ids))
  return {#entries, added}
end

-- ENQUEUE: args now, then n x (id, step, kind, payload, order key or '', available at, order slots)
--   -> how many were new
local function enqueue(keys, args)
  local P = prefix_of(keys)
  local added = 0
  for i = 2, #args, 7 do
    added = added + add_delivery(P, args[1], args[i], args[i + 1], args[i + 2], args[i + 3], args[i + 4],
      args[i + 5], args[i + 6])
  end
  return added
end

-- CLAIM: args token, ms, owner, limit, lease, now, steps...
--   -> flat {id, step, kind, payload, attempts, created, ...}
-- Like the writes, a claim is applied once per token: it keeps the ids it leased under "{P}:w:<token>",
-- and a retry (its reply was lost) gets those of them the owner still holds, as they are now, instead
-- of claiming again and leaving the first claim's deliveries leased to nobody's knowledge.
local function claim(keys, args)
  table.remove(args)  -- the caller's traceparent, which every call through the client's write() ends with
  local P = prefix_of(keys)
  local marker = P .. ':w:' .. args[1]
  local owner, limit, lease, now = args[3], tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
  local seen = redis.call('GET', marker)
  if seen then
    local out = {}
    for _, id in ipairs(cmsgpack.unpack(seen)) do
      local f = redis.call('HMGET', P .. ':d:' .. id, 'owner', 'step', 'kind', 'payload', 'attempts', 'created')
      if f[1] == owner then
        for _, value in ipairs({id, f[2], f[3], f[4], tonumber(f[5]), f[6]}) do out[#out + 1] = value end
      end
    end
    return out
  end
  local candidates = {}
  for i = 7, #args do
    local due = redis.call('ZRANGE', P .. ':due:' .. args[i], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit,
      'WITHSCORES')
    for j = 1, #due, 2 do candidates[#candidates + 1] = {due[j], tonumber(due[j + 1]), args[i]} end
  end
  table.sort(candidates, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  local out = {}
  local ids = {}
  for i = 1, math.min(limit, #candidates) do
    local member, step = candidates[i][1], candidates[i][3]
    local id = string.sub(member, 18)
    local d = P .. ':d:' .. id
    local attempts = redis.call('HINCRBY', d, 'attempts', 1)
    redis.call('HSET', d, 'owner', owner)
    redis.call('ZADD', P .. ':due:' .. step, now + lease, member)
    local f = redis.call('HMGET', d, 'kind', 'payload', 'created')
    for _, value in ipairs({id, step, f[1], f[2], attempts, f[3]}) do out[#out + 1] = value end
    ids[#ids + 1] = id
  end
  if #ids > 0 then redis.call('SET', marker, cmsgpack.pack(ids), 'PX', args[2]) end
  return out
end

-- EXTEND: args owner, lease until, ids...
local function extend(keys, args)
  local P = prefix_of(keys)
  for i = 3, #args do
    local fields = held(P, args[i], args[1])
    if fields then redis.call('ZADD', P .. ':due:' .. fields.step, tonumber(args[2]), fields.member) end
  end
  return 1
end

-- SETTLE: args id, owner, outcome (complete|retry|postpone|dead), available at (retry, postpone), error, now
--   -> 1 | 0. A postponed delivery's claim is not an attempt: its count goes back to what it was.
local function settle(keys, args)
  local P = prefix_of(keys)
  local id, owner, outcome, now = args[1], args[2], args[3], args[6]
  local fields = held(P, id, owner)
  if not fields then return 0 end
  if outcome == 'retry' or outcome == 'postpone' then
    redis.call('HDEL', P .. ':d:' .. id, 'owner')
    if outcome == 'retry' then
      redis.call('HSET', P .. ':d:' .. id, 'lerr', args[5])
      redis.call('HSETNX', P .. ':d:' .. id, 'ferr', args[5])
    end
    if outcome == 'postpone' and tonumber(fields.attempts) > 0 then
      redis.call('HINCRBY', P .. ':d:' .. id, 'attempts', -1)
    end
    redis.call('ZADD', P .. ':due:' .. fields.step, tonumber(args[4]), fields.member)
    return 1
  end
  remove_delivery(P, now, id, fields)
  if outcome == 'dead' then
    dead_migrate(P)
    dead_put(P, id, fields.step, fields.kind, fields.payload, tonumber(fields.attempts), args[5], fields.created,
      now, fields.ferr or args[5])
  end
  return 1
end

-- COMPLETE_MANY: args owner, now, ids... -> the ids removed (those owner still held), as SETTLE's
-- 'complete' would each: the worker completes the handlers that returned together in one call.
local function complete_many(keys, args)
  local P = prefix_of(keys)
  local owner, now = args[1], args[2]
  local done = {}
  for i = 3, #args do
    local fields = held(P, args[i], owner)
    if fields then
      remove_delivery(P, now, args[i], fields)
      done[#done + 1] = args[i]
    end
  end
  return done
end

-- DEAD: args step ('' = any), kind ('' = any), after failure time ('' = from the oldest), after id, limit
--   -> dead letters as JSON arrays, by failure time then id. Reads the index a chunk at a time (by rank)
--   from the cursor and stops once the page is full: a page costs about the page (plus, filtered, the letters of
--   other steps or kinds passed over), not every letter.
local function dead(keys, args)
  local P = prefix_of(keys)
  dead_migrate(P)
  local step, kind, after, after_id, limit = args[1], args[2], args[3], args[4], tonumber(args[5])
  local index = P .. ':dlz'
  local out = {}
  local chunk = math.max(limit, 100)
  -- Start by rank (O(log n)): after the cursor's letter while it is there, else after every letter that
  -- failed earlier (and the ties not past the cursor are skipped below).
  local start = 0
  if after ~= '' then
    local score = redis.call('ZSCORE', index, after_id)
    if score and tonumber(score) == tonumber(after) then
      start = redis.call('ZRANK', index, after_id) + 1
    else
      start = redis.call('ZCOUNT', index, '-inf', '(' .. after)
    end
  end
  while true do
    local ids = redis.call('ZRANGE', index, start, start + chunk - 1, 'WITHSCORES')
    for i = 1, #ids, 2 do
      local id = ids[i]
      if after == '' or tonumber(ids[i + 1]) > tonumber(after) or id > after_id then
        local raw = redis.call('HGET', P .. ':dl', id)
        local letter = cjson.decode(raw)
        if (step == '' or letter[2] == step) and (kind == '' or letter[3] == kind) then
          out[#out + 1] = raw
          if #out >= limit then return out end
        end
      end
    end
    if #ids < 2 * chunk then return out end
    start = start + chunk
  end
end

-- ADD_DEAD: args now, error, then n x (id, step, kind, payload) -> how many were new. Kept as dead letters
-- at once (messages no step subscribes to); an id pending or already among the dead letters is skipped.
local function add_dead(keys, args)
  local P = prefix_of(keys)
  dead_migrate(P)
  local now, error = args[1], args[2]
  local added = 0
  for i = 3, #args, 4 do
    local id = args[i]
    if redis.call('EXISTS', P .. ':d:' .. id) == 0 and redis.call('HEXISTS', P .. ':dl', id) == 0 then
      dead_put(P, id, args[i + 1], args[i + 2], args[i + 3], 0, error, now, now, error)
      added = added + 1
    end
  end
  return added
end

-- PENDING_ALL: no args -> flat {step, unsettled deliveries, ...}
local function pending_all(keys, args)
  return redis.call('HGETALL', prefix_of(keys) .. ':pending')
end

-- PENDING: args step ('' = all) -> unsettled deliveries
local function pending(keys, args)
  local P = prefix_of(keys)
  if args[1] ~= '' then return tonumber(redis.call('HGET', P .. ':pending', args[1]) or '0') end
  local total = 0
  for _, n in ipairs(redis.call('HVALS', P .. ':pending')) do total = total + tonumber(n) end
  return total
end

redis.register_function('motia1_get', get)
redis.register_function('motia1_set', once(set))
redis.register_function('motia1_cas', once(cas))
redis.register_function('motia1_delete', once(delete))
redis.register_function('motia1_clear', once(clear))
redis.register_function{function_name = 'motia1_items', callback = items, flags = {'no-writes'}}
redis.register_function{function_name = 'motia1_count', callback = count, flags = {'no-writes'}}
redis.register_function{function_name = 'motia1_scopes', callback = scopes, flags = {'no-writes'}}
redis.register_function('motia1_purge', purge)
redis.register_function('motia1_commit', once(commit))
redis.register_function('motia1_restore', once(restore))
redis.register_function('motia1_enable_events', enable_events)
redis.register_function('motia1_dispatch', dispatch)
redis.register_function('motia1_enqueue', enqueue)
redis.register_function('motia1_claim', claim)
redis.register_function('motia1_extend', extend)
redis.register_function('motia1_settle', settle)
redis.register_function('motia1_complete_many', complete_many)
redis.register_function('motia1_dead', dead)  -- not read-only: it may move a pre-issue-18 list over
redis.register_function{function_name = 'motia1_pending', callback = pending, flags = {'no-writes'}}
redis.register_function('motia1_add_dead', add_dead)
redis.register_function{function_name = 'motia1_pending_all', callback = pending_all, flags = {'no-writes'}}

-- Named leases and retention -----------------------------------------------------------------------
-- "{P}:lease:<name>": string "expires_at|owner" (expires_at as the client formatted it), with a Redis
-- expiry well after expires_at that only collects leases nobody released. "{P}:steps": zset step ->
-- when an app last said it serves the step (touch_steps, a plain ZADD GT from the client).

local function lease_of(P, name)
  local raw = redis.call('GET', P .. ':lease:' .. name)
  if not raw then return nil end
  local sep = string.find(raw, '|', 1, true)
  return tonumber(string.sub(raw, 1, sep - 1)), string.sub(raw, sep + 1)
end

-- ACQUIRE_LEASE: args token, ms, name, owner, now, expires_at, keep (ms the key outlives now) -> 1 | 0
local function acquire_lease(P, args)
  local expires_at, holder = lease_of(P, args[3])
  if holder and holder ~= args[4] and expires_at > tonumber(args[5]) then return 0 end
  redis.call('SET', P .. ':lease:' .. args[3], args[6] .. '|' .. args[4], 'PX', args[7])
  return 1
end

-- RELEASE_LEASE: args token, ms, name, owner, now -> 1 | 0
local function release_lease(P, args)
  local expires_at, holder = lease_of(P, args[3])
  if holder ~= args[4] or expires_at <= tonumber(args[5]) then return 0 end
  redis.call('DEL', P .. ':lease:' .. args[3])
  return 1
end

local function delivery_fields(P, id)
  local raw = redis.call('HGETALL', P .. ':d:' .. id)
  local fields = {}
  for i = 1, #raw, 2 do fields[raw[i]] = raw[i + 1] end
  return fields
end

-- Move one delivery to the dead letters (as settle does) with its hash; its index entries are the caller's.
local function bury(P, id, fields, error, now)
  dead_put(P, id, fields.step, fields.kind, fields.payload, tonumber(fields.attempts), error, fields.created, now,
    fields.ferr or error)
  redis.call('DEL', P .. ':d:' .. id)
end

-- The waiting deliveries of a step become dead letters; leased ones (owner set, lease not over) stay.
-- Every delivery of a step is a member of its due set or waits in the chain behind one that is.
-- -> moved, still leased
local function orphan(P, step, error, now)
  local due = P .. ':due:' .. step
  local moved, leased = 0, 0
  local members = redis.call('ZRANGE', due, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local member = members[i]
    local id = string.sub(member, 18)
    local fields = delivery_fields(P, id)
    if fields.owner and tonumber(members[i + 1]) > tonumber(now) then
      leased = leased + 1
    else
      bury(P, id, fields, error, now)
      redis.call('ZREM', due, member)
      if fields.order ~= '' then
        local slots = tonumber(fields.slots or 1)
        open_gate((order_keys(P, step, fields.order, slots)), slots)
      end
      moved = moved + 1
    end
    if fields.order ~= '' then
      local _, chain = order_keys(P, step, fields.order, tonumber(fields.slots or 1))
      for _, next_id in ipairs(redis.call('LRANGE', chain, 0, -1)) do
        bury(P, next_id, delivery_fields(P, next_id), error, now)
        moved = moved + 1
      end
      redis.call('DEL', chain)
    end
  end
  if moved > 0 and redis.call('HINCRBY', P .. ':pending', step, -moved) <= 0 then
    redis.call('HDEL', P .. ':pending', step)
  end
  return moved, leased
end

-- The stream triggers of a step (layout in streams.lua): "{P}:s:t" names the streams that have some,
-- "{P}:s:t:<stream>" holds each as JSON [step, group, item].
local function forget_stream_triggers(P, step)
  for _, stream in ipairs(redis.call('SMEMBERS', P .. ':s:t')) do
    local triggers = P .. ':s:t:' .. stream
    for _, raw in ipairs(redis.call('SMEMBERS', triggers)) do
      if cjson.decode(raw)[1] == step then redis.call('SREM', triggers, raw) end
    end
    if redis.call('EXISTS', triggers) == 0 then redis.call('SREM', P .. ':s:t', stream) end
  end
end

-- PRUNE: args token, ms, now, dead-letter cut ('' = skip), step cut ('' = skip), then n x (step, error)
--   for the steps the client found stale (each checked again here) -> {dead letters, steps, orphaned}.
-- Dead letters are indexed by failure time: removing the old ones costs what is removed.
local function prune(P, args)
  local now = args[3]
  local removed, forgotten, orphaned = 0, 0, 0
  dead_migrate(P)
  if args[4] ~= '' then
    local old = redis.call('ZRANGE', P .. ':dlz', '-inf', '(' .. args[4], 'BYSCORE')
    for start = 1, #old, 1000 do
      redis.call('HDEL', P .. ':dl', unpack(old, start, math.min(start + 999, #old)))
    end
    removed = redis.call('ZREMRANGEBYSCORE', P .. ':dlz', '-inf', '(' .. args[4])
  end
  if args[5] ~= '' then
    local cut = tonumber(args[5])
    for i = 6, #args, 2 do
      local step = args[i]
      local seen = redis.call('ZSCORE', P .. ':steps', step)
      if seen and tonumber(seen) < cut then  -- not touched since the client looked
        local moved, leased = orphan(P, step, args[i + 1], now)
        orphaned = orphaned + moved
        for _, raw in ipairs(redis.call('SMEMBERS', P .. ':subs')) do
          if cjson.decode(raw)[1] == step then redis.call('SREM', P .. ':subs', raw) end
        end
        forget_stream_triggers(P, step)
        if leased == 0 then
          redis.call('ZREM', P .. ':steps', step)
          forgotten = forgotten + 1
        end
      end
    end
  end
  return {removed, forgotten, orphaned}
end

redis.register_function('motia1_acquire_lease', once(acquire_lease))
redis.register_function('motia1_release_lease', once(release_lease))
redis.register_function('motia1_prune', once(prune))

-- CAP_DEAD: args limit, batch -> how many dead letters were deleted (at most batch): the oldest beyond the
-- newest `limit`, by failure time then id (the order every backend lists them in). Safe to repeat.
local function cap_dead(keys, args)
  local P = prefix_of(keys)
  dead_migrate(P)
  local excess = math.min(redis.call('ZCARD', P .. ':dlz') - tonumber(args[1]), tonumber(args[2]))
  if excess <= 0 then return 0 end
  local oldest = redis.call('ZRANGE', P .. ':dlz', 0, excess - 1)
  redis.call('HDEL', P .. ':dl', unpack(oldest))
  redis.call('ZREM', P .. ':dlz', unpack(oldest))
  return #oldest
end

redis.register_function('motia1_cap_dead', cap_dead)

-- Stats ----------------------------------------------------------------------------------------------

-- Bytes Redis reports for a key (an estimate for big hashes and sets: MEMORY USAGE samples them), 0 if absent.
local function usage(key)
  return redis.call('MEMORY', 'USAGE', key) or 0
end

-- STATS: args now -> {scopes as flat {scope, stored keys, bytes, expired, ...}, counts, sizes as flat
--   {part, bytes, ...}}. Reads only: one call per scope, stream group and step of the store, so it costs in
--   proportion to how many there are, not to what they hold. Pending deliveries' own hashes ("{P}:d:<id>")
--   are not measured (only counted): reaching them would cost a read per delivery.
local function stats(keys, args)
  local P = prefix_of(keys)
  local now = args[1]
  local scopes, sizes = {}, {}
  local expired, scope_bytes = 0, 0
  for _, scope in ipairs(redis.call('ZRANGE', P .. ':scopes', 0, -1)) do
    local k, v, x = scope_keys(P, scope)
    local gone = redis.call('ZCOUNT', x, '-inf', now)
    local bytes = usage(k) + usage(v) + usage(x)
    scopes[#scopes + 1] = scope
    scopes[#scopes + 1] = redis.call('HLEN', v)
    scopes[#scopes + 1] = bytes
    scopes[#scopes + 1] = gone
    expired = expired + gone
    scope_bytes = scope_bytes + bytes
  end
  local pending = 0
  local due_bytes = usage(P .. ':pending')
  local steps = redis.call('HGETALL', P .. ':pending')
  for i = 1, #steps, 2 do
    pending = pending + tonumber(steps[i + 1])
    due_bytes = due_bytes + usage(P .. ':due:' .. steps[i])
  end
  local subscriptions = redis.call('SCARD', P .. ':subs')
  local trigger_bytes = usage(P .. ':subs') + usage(P .. ':s:t')
  for _, stream in ipairs(redis.call('SMEMBERS', P .. ':s:t')) do
    subscriptions = subscriptions + redis.call('SCARD', P .. ':s:t:' .. stream)
    trigger_bytes = trigger_bytes + usage(P .. ':s:t:' .. stream)
  end
  local groups = redis.call('HKEYS', P .. ':s:seq')
  local items, changes = 0, redis.call('XLEN', P .. ':s:log')
  local stream_bytes = usage(P .. ':s:seq') + usage(P .. ':s:log') + usage(P .. ':s:names')
  for _, g in ipairs(groups) do
    items = items + redis.call('HLEN', P .. ':s:i:' .. g)
    changes = changes + redis.call('XLEN', P .. ':s:h:' .. g)
    stream_bytes = stream_bytes + usage(P .. ':s:i:' .. g) + usage(P .. ':s:h:' .. g)
  end
  local dead = redis.call('ZCARD', P .. ':dlz') + redis.call('LLEN', P .. ':dead')  -- the list: before issue 18
  local counts = {expired, redis.call('XLEN', P .. ':events'), pending, dead,
    subscriptions, redis.call('ZCARD', P .. ':steps'), #groups, items, changes}
  sizes = {'keys', scope_bytes + usage(P .. ':scopes') + usage(P .. ':xs'), 'outbox', usage(P .. ':events'),
    'deliveries', due_bytes, 'dead_letters',
    usage(P .. ':dl') + usage(P .. ':dlz') + usage(P .. ':dead') + usage(P .. ':deadids'),
    'subscriptions', trigger_bytes + usage(P .. ':steps'), 'streams', stream_bytes, 'meta', usage(P .. ':meta')}
  return {scopes, counts, sizes}
end

redis.register_function{function_name = 'motia1_stats', callback = stats, flags = {'no-writes'}}
