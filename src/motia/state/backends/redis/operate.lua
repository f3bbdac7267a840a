--[[
What operators do to dead letters and pending deliveries (appended to functions.lua, after streams.lua,
and loaded with them as one library: it uses their helpers). Dead letters: "{P}:dl" and "{P}:dlz" (see
dead_migrate in functions.lua).
]]

-- DEAD_GET: args id -> the dead letter as JSON, or nil
local function dead_get(keys, args)
  local P = prefix_of(keys)
  dead_migrate(P)
  return redis.call('HGET', P .. ':dl', args[1])
end

-- REDRIVE: args token, ms, now, ids... -> the ids redriven. Each dead letter whose id is not pending again
-- becomes a delivery of the same id, step, kind and payload, claimable now, without an order key.
local function redrive(P, args)
  dead_migrate(P)
  local now = args[3]
  local done = {}
  for i = 4, #args do
    local id = args[i]
    local raw = redis.call('HGET', P .. ':dl', id)
    if raw and redis.call('EXISTS', P .. ':d:' .. id) == 0 then
      local letter = cjson.decode(raw)
      redis.call('HDEL', P .. ':dl', id)
      redis.call('ZREM', P .. ':dlz', id)
      add_delivery(P, now, id, letter[2], letter[3], letter[4], '', nil)
      done[#done + 1] = id
    end
  end
  return done
end

-- PURGE_DEAD: args token, ms, ids... -> the ids deleted
local function purge_dead(P, args)
  dead_migrate(P)
  local done = {}
  for i = 3, #args do
    if redis.call('HDEL', P .. ':dl', args[i]) == 1 then
      redis.call('ZREM', P .. ':dlz', args[i])
      done[#done + 1] = args[i]
    end
  end
  return done
end

-- PENDING_PAGE: args now, step ('' = every step with deliveries), kind ('' = any), after (number), limit
--   -> deliveries as JSON [id, step, kind, payload, attempts, created, available, leased until or null,
--   last error or null, first error or null, number], in the order they were added (their member's
--   number). Reads every delivery of the steps listed (the due set and the chains behind it): an
--   operator's page costs the pending deliveries of those steps.
local function pending_page(keys, args)
  local P = prefix_of(keys)
  local now, kind, after, limit = tonumber(args[1]), args[3], tonumber(args[4]), tonumber(args[5])
  local steps = {}
  if args[2] ~= '' then
    steps[1] = args[2]
  else
    steps = redis.call('HKEYS', P .. ':pending')
  end
  local found = {}
  -- Times and numbers go out as strings: cjson would print them with 14 digits.
  local function add(id, step, score)
    local f = delivery_fields(P, id)
    if f.member == nil then return end
    local number = string.sub(f.member, 1, 16)
    if tonumber(number) <= after or (kind ~= '' and f.kind ~= kind) then return end
    local leased = cjson.null
    local available = f.avail or f.created
    if score then
      if f.owner and tonumber(score) > now then leased = score else available = score end
    end
    found[#found + 1] = {tonumber(number), cjson.encode({id, step, f.kind, f.payload, tonumber(f.attempts),
      f.created, available, leased, f.lerr or cjson.null, f.ferr or cjson.null, number})}
  end
  for _, step in ipairs(steps) do
    local due = redis.call('ZRANGE', P .. ':due:' .. step, 0, -1, 'WITHSCORES')
    for i = 1, #due, 2 do
      local id = string.sub(due[i], 18)
      add(id, step, due[i + 1])
      local order = redis.call('HGET', P .. ':d:' .. id, 'order')
      if order and order ~= '' then
        for _, next_id in ipairs(redis.call('LRANGE', P .. ':chain:' .. step .. '\n' .. order, 0, -1)) do
          add(next_id, step, nil)
        end
      end
    end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i = 1, math.min(limit, #found) do out[i] = found[i][2] end
  return out
end

redis.register_function('motia1_dead_get', dead_get)
redis.register_function('motia1_redrive', once(redrive))
redis.register_function('motia1_purge_dead', once(purge_dead))
redis.register_function{function_name = 'motia1_pending_page', callback = pending_page, flags = {'no-writes'}}
