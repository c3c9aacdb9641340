-- PartnerPulse: apply one batch to Redis, effectively once (see docs/guarantees.md).
--
-- The batch carries each subject's *absolute* current contribution.  For every
-- subject the script diffs it against what Redis itself holds from the
-- subject's previous publication and applies only the difference, so sending
-- the same contribution again changes nothing.  A subject whose sender knows
-- what Redis holds (its base) comes with that base's digest instead, its
-- deltas summed with the other such subjects' in "n" (below).
--
-- ARGV[1]  key prefix, e.g. "pp:"
-- ARGV[2]  batch JSON:
--   {"s": [[subject, metrics, [[touch id, credit line JSON], ...], cause], ...],
--    "n": [[scope, metric, delta], ...],
--    "d": [[source "topic|partition|offset", reason], ...],
--    "o": [["topic|partition", offset], ...],
--    "st": [[op, key, field, value index], ...],
--    "f": [owners key, token, [partition, ...]],
--    "x": [["topic|partition", first offset, last offset], ...]}
--   subject and scopes arrive percent-encoded (sinks/keys.py); `metrics` is the
--   JSON text [[scope, metric, value], ...] stored as is ("" = no metrics).
--   A subject may carry a fifth item, the SHA-1 of the metrics its sender
--   believes Redis holds for it (its *base*).  Its metrics are then false when
--   they did not change from the base, and its credit lines false when they did
--   not; its metric deltas are not diffed here but are part of "n", the sum of
--   every such subject's deltas ([[scope, metric, delta], ...]).  If what Redis
--   holds does not have the digest, the script writes nothing and fails with
--   STALE: the sender's view is wrong and it must not go on.
--   "st" (optional): subject state written with the batch; op "h" is
--   HSET key field ARGV[value index], "s" is SADD key member (sinks/redis_sink.py
--   `HashWrite` / `SetAdd`; the layout is streams/state's).
--   Values travel as arguments of their own: they may be binary (compressed).
--   "f" (optional): the fence.  Every partition must be owned by `token` in
--   the owners hash, else the script writes nothing and fails with FENCED: a
--   worker that lost its partitions cannot write over their new owner.
--   "x" (optional): the batch's offsets per partition; each first offset
--   must follow the applied offset (or the partition have none), else the
--   script writes nothing and fails with OFFSETS: no message is applied twice
--   or skipped.  A batch whose every last offset is already the applied one
--   was applied before (a retried call): the script does nothing.
--   "q" (optional): quiet; the reply's two change lists are left empty (a
--   worker reads the changes from the outbox, not from the reply).
-- ARGV[3]  approximate MAXLEN of the changes stream
-- ARGV[4…] state values, referred to by "st"
--
-- Metrics land in the hash <prefix>m:<scope>; a metric named "<metric>@<day>"
-- is a point of a daily series and lands in the hash <prefix>d:<scope>:<metric>,
-- field <day>.  Every metric of a partner scope also ranks the partner in the
-- leaderboard <prefix>lb:<metric> (a sorted set; members are partner ids).
--
-- Returns {metric changes {scope, metric, new value, delta},
--          credit changes {subject, touch id, old line or false, new line or false},
--          number of dead letters counted, changes stream entry id or false,
--          outbox stream entry id or false}.
--
-- Every running total that moved (or whose days did) is told once, as
-- {"scope", "metric", "value", "delta"} plus, for a metric with a series,
-- "days": {"<day>": {"value", "delta"}} of the points that moved (scope
-- plain text): a JSON list of them is appended to the capped stream
-- <prefix>changes and published on the channel of that name.
--
-- When anything changed (a metric or a credit line), the same call adds one
-- entry to the *uncapped* stream <prefix>outbox with the fields `metrics`, that
-- same list, and `credits`, the credit changes above as JSON ([[subject, touch
-- id, old line or false, new line or false, cause], ...]; subject
-- percent-encoded as in the batch).  sinks/forwarder.py relays it to Kafka, one
-- message per update and per credit delta, and deletes it only after the
-- broker acknowledged it.
--
-- Phase 1 only reads and computes: anything that can fail on bad input fails
-- there.  Phase 2 writes.  Redis does not roll back a script that fails half-way.

local prefix, batch, maxlen = ARGV[1], cjson.decode(ARGV[2]), ARGV[3]

-- A metric with a daily series is published as its points ("<metric>@<day>")
-- only; its running total is derived here, as models/periods.with_totals does
-- for the engine, so the days always add up to the total.
-- net: "<scope> <metric>" -> summed delta of the running total, in first-seen
-- order (a scope has no space); days: the same -> its points' summed deltas,
-- {order = {day, ...}, net = {day -> delta}}.
local order, net, days = {}, {}, {}
local total_of, day_of = {}, {}  -- field -> its total's field, its day or false
local function bump(field, delta)
  if delta == 0 then return end
  local total, day = total_of[field], day_of[field]
  if total == nil then
    local space = string.find(field, ' ', 1, true)
    local at = string.find(field, '@', space + 1, true)
    total, day = at and field:sub(1, at - 1) or field, at and field:sub(at + 1) or false
    total_of[field], day_of[field] = total, day
  end
  local held = net[total]
  if held == nil then
    order[#order + 1] = total
    held = 0
  end
  net[total] = held + delta
  if day then
    local points = days[total]
    if points == nil then
      points = {order = {}, net = {}}
      days[total] = points
    end
    local sum = points.net[day]
    if sum == nil then
      points.order[#points.order + 1] = day
      sum = 0
    end
    points.net[day] = sum + delta
  end
end

local function decode_metrics(json)
  if not json or json == '' then return {}, {} end
  local list, map = cjson.decode(json), {}
  for _, m in ipairs(list) do map[m[1] .. ' ' .. m[2]] = m[3] end
  return list, map
end

-- Scopes, metric names and days repeat thousands of times in a batch: each text
-- is escaped, unescaped or quoted once per call (about a sixth of the script's time).
local unescaped = {}
local function unescape(s)
  local u = unescaped[s]
  if u == nil then
    u = s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end)
    unescaped[s] = u
  end
  return u
end

local escaped = {}
local function escape(s)  -- as sinks/keys.py escape(): metric names inside key names
  local e = escaped[s]
  if e == nil then
    e = s:gsub('[^%w%._~%-]', function(c) return string.format('%%%02X', string.byte(c)) end)
    escaped[s] = e
  end
  return e
end

local quoted = {}
local function quote(s)  -- a JSON string
  local q = quoted[s]
  if q == nil then
    q = cjson.encode(s)
    quoted[s] = q
  end
  return q
end

local function int(x) return string.format('%d', x) end

-- Phase 0: checks ------------------------------------------------------------

local offsets_key = prefix .. 'offsets'
if batch.f then
  local owners, token = batch.f[1], batch.f[2]
  for _, p in ipairs(batch.f[3]) do
    if redis.call('HGET', owners, tostring(p)) ~= token then
      return redis.error_reply('FENCED partition ' .. tostring(p) .. ' has another owner')
    end
  end
end
-- A batch is new (each partition continues the applied offset) or already
-- applied (each partition's applied offset is the batch's last: a retry of a
-- call whose reply was lost); anything else is refused.
local seen_as = nil
for _, x in ipairs(batch.x or {}) do
  local current = tonumber(redis.call('HGET', offsets_key, x[1]))
  local as = nil
  if current == nil or x[2] == current + 1 then
    as = 'new'
  elseif current == x[3] then
    as = 'applied'
  end
  if as == nil or (seen_as ~= nil and as ~= seen_as) then
    return redis.error_reply(string.format('OFFSETS %s: applied up to %s, batch is %d..%d',
      x[1], tostring(current), x[2], x[3]))
  end
  seen_as = as
end
if seen_as == 'applied' then return {{}, {}, 0, false, false} end

-- Phase 1: read, diff ---------------------------------------------------------

local writes, credit_changes = {}, {}
for _, s in ipairs(batch.s) do
  local subject, metrics_json, lines, cause = s[1], s[2], s[3], s[4] or ''

  local contrib_key = prefix .. 'contrib:' .. subject
  local credit_key = prefix .. 'credit:' .. subject

  local old_json = redis.call('GET', contrib_key) or ''
  if s[5] then
    if redis.sha1hex(old_json) ~= s[5] then
      return redis.error_reply('STALE ' .. subject .. ': Redis holds other metrics than its base')
    end
    metrics_json = metrics_json or old_json  -- its deltas are in "n"
  elseif old_json == metrics_json then
    -- unchanged (or this call is a retry that already landed): nothing to apply
  else
    local old_list, old_map = decode_metrics(old_json)
    local new_list, new_map = decode_metrics(metrics_json)
    for _, m in ipairs(new_list) do
      local field = m[1] .. ' ' .. m[2]
      bump(field, m[3] - (old_map[field] or 0))
    end
    for _, m in ipairs(old_list) do
      local field = m[1] .. ' ' .. m[2]
      if new_map[field] == nil then bump(field, -m[3]) end
    end
  end
  if old_json ~= metrics_json then
    writes[#writes + 1] = {'contrib', contrib_key, metrics_json}
  end

  local old_lines, flat = {}, {}
  if lines then flat = redis.call('HGETALL', credit_key) else lines = {} end
  for i = 1, #flat, 2 do old_lines[flat[i]] = flat[i + 1] end
  local kept = {}
  for _, line in ipairs(lines) do
    local touch, json = line[1], line[2]
    kept[touch] = true
    if old_lines[touch] ~= json then
      writes[#writes + 1] = {'HSET', credit_key, touch, json}
      credit_changes[#credit_changes + 1] = {subject, touch, old_lines[touch] or false, json, cause}
    end
  end
  for i = 1, #flat, 2 do
    local touch = flat[i]
    if not kept[touch] then
      writes[#writes + 1] = {'HDEL', credit_key, touch}
      credit_changes[#credit_changes + 1] = {subject, touch, flat[i + 1], false, cause}
    end
  end
end

for _, d in ipairs(batch.n or {}) do bump(d[1] .. ' ' .. d[2], d[3]) end

local dlq_key, counted, seen = prefix .. 'dlq:seen', 0, {}
for _, d in ipairs(batch.d) do
  local source, reason = d[1], d[2]
  if not seen[source] and redis.call('HEXISTS', dlq_key, source) == 0 then
    seen[source] = true
    counted = counted + 1
    writes[#writes + 1] = {'HSET', dlq_key, source, reason}
    bump('all dq.dead_letters', 1)
    bump('all dq.dead_letters.' .. reason, 1)
  end
end

for _, o in ipairs(batch.o) do
  local current = tonumber(redis.call('HGET', offsets_key, o[1]))
  if current == nil or o[2] > current then
    writes[#writes + 1] = {'HSET', offsets_key, o[1], int(o[2])}
  end
end

-- Phase 2: write --------------------------------------------------------------

for _, w in ipairs(batch.st or {}) do
  if w[1] == 'h' then
    redis.call('HSET', w[2], w[3], ARGV[w[4]])
  elseif w[1] == 's' then
    redis.call('SADD', w[2], w[3])
  end
end

for _, w in ipairs(writes) do
  if w[1] == 'contrib' then
    if w[3] == '' then redis.call('DEL', w[2]) else redis.call('SET', w[2], w[3]) end
  else
    redis.call(unpack(w))
  end
end

-- One update per running total that moved, or whose days did (a late event can
-- move a conversion from one day to another and leave the total as it was),
-- with those days: the same JSON on the changes stream, its pub/sub channel
-- and the outbox.  Numbers are formatted by hand: cjson would round them to 14
-- significant digits.
local changes, updates, moved = {}, {}, false
for _, field in ipairs(order) do
  local space = string.find(field, ' ', 1, true)
  local scope, metric = field:sub(1, space - 1), field:sub(space + 1)
  local moved_days = {}
  local points = days[field]
  if points ~= nil then  -- its daily series: <prefix>d:<scope>:<metric>, field <day>
    local key = prefix .. 'd:' .. scope .. ':' .. escape(metric)
    for _, day in ipairs(points.order) do
      local delta = points.net[day]
      if delta ~= 0 then
        local value = redis.call('HINCRBY', key, day, int(delta))
        if value == 0 then redis.call('HDEL', key, day) end
        moved_days[#moved_days + 1] = quote(day) .. ':{"value":' .. int(value) .. ',"delta":' .. int(delta) .. '}'
        if not batch.q then changes[#changes + 1] = {scope, metric .. '@' .. day, value, delta} end
      end
    end
  end
  local delta, value = net[field], nil
  if delta ~= 0 then
    local key = prefix .. 'm:' .. scope
    value = redis.call('HINCRBY', key, metric, int(delta))
    if value == 0 then redis.call('HDEL', key, metric) end
    if scope:sub(1, 8) == 'partner:' then
      local board, member = prefix .. 'lb:' .. escape(metric), unescape(scope:sub(9))
      if value == 0 then
        redis.call('ZREM', board, member)
      else
        redis.call('ZADD', board, value, member)
      end
    end
    if not batch.q then changes[#changes + 1] = {scope, metric, value, delta} end
  end
  if delta ~= 0 or #moved_days > 0 then
    moved = true
    if value == nil then value = tonumber(redis.call('HGET', prefix .. 'm:' .. scope, metric) or '0') end
    local update = '{"scope":' .. quote(unescape(scope)) .. ',"metric":' .. quote(metric)
      .. ',"value":' .. int(value) .. ',"delta":' .. int(delta)
    if #moved_days > 0 then update = update .. ',"days":{' .. table.concat(moved_days, ',') .. '}' end
    updates[#updates + 1] = update .. '}'
  end
end

local entry, outbox, payload = false, false, '[' .. table.concat(updates, ',') .. ']'
if #updates > 0 then
  entry = redis.call('XADD', prefix .. 'changes', 'MAXLEN', '~', maxlen, '*', 'changes', payload)
  redis.call('PUBLISH', prefix .. 'changes', payload)
end
if moved or #credit_changes > 0 then
  -- credit changes hold only strings and false: cjson encodes them exactly
  local credits_json = #credit_changes > 0 and cjson.encode(credit_changes) or '[]'
  outbox = redis.call('XADD', prefix .. 'outbox', '*', 'metrics', payload, 'credits', credits_json)
end

if batch.q then return {{}, {}, counted, entry, outbox} end
return {changes, credit_changes, counted, entry, outbox}
