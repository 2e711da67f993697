-- Tiles of one (entity, aggregation view): a hash, updated atomically. See fs/aggregation/tiles.py
-- for the record layout and docs/aggregations.md for the semantics.
--   fields: "<tile seconds>:<tile index>" -> record of S little-endian doubles (slot values)
--           "_fp" layout fingerprint, "_o:<partition>" last Kafka offset applied,
--           "_n:<tile seconds>" newest tile index seen
-- KEYS[1]: the hash. ARGV[1] fingerprint, ARGV[2] mode ("e" events | "t" tiles; upper case: the same
-- without key expiry, for replays of history into a scratch namespace), ARGV[3] slot kinds
-- (one char per slot: n s q m M t l), ARGV[4] slot inputs ("-1,0,..."), ARGV[5] granularities
-- ("tile_us:tiles:tag,..."), ARGV[6] number of items, then the items:
--   mode e: partition, offset, time_us, one value per input ("" = null), per event. An event whose
--           offset is at or below its partition's mark is a redelivery and changes nothing.
--   mode t: tag, tile index, record, per tile (a batch rebuild from the raw events): replaces the
--           stored tile unless that one counted more events (the stream saw events the batch has not).
-- A tile older than the newest tile minus the longest window of its size is dropped (it can never be
-- read again: reads are at the present); the key expires when its newest tile leaves every window.
-- Returns the number of events (mode e) or tiles (mode t) applied.
local key = KEYS[1]
local call, tonumber, floor = redis.call, tonumber, math.floor
local fp, mode = ARGV[1], string.lower(ARGV[2])
local expires = ARGV[2] == mode
local kinds, inputs = {}, {}
for c in string.gmatch(ARGV[3], '.') do kinds[#kinds + 1] = c end
for x in string.gmatch(ARGV[4], '[^,]+') do inputs[#inputs + 1] = tonumber(x) end
local S = #kinds
local fmt = '<' .. string.rep('d', S)
local grans = {}
for g, n, tag in string.gmatch(ARGV[5], '(%d+):(%d+):(%d+)') do
  grans[#grans + 1] = {size = tonumber(g), tiles = tonumber(n), tag = tag}
end
local count = tonumber(ARGV[6])
local inf = 1 / 0

if call('HGET', key, '_fp') ~= fp then
  call('DEL', key)  -- another layout (the view's aggregations changed): start over
  call('HSET', key, '_fp', fp)
end

local newest, low = {}, {}
for i, g in ipairs(grans) do
  local n = tonumber(call('HGET', key, '_n:' .. g.tag) or '')
  newest[i] = n
  low[i] = n and (n - g.tiles) or -inf
end

local cache = {}  -- field -> slot values
local function tile(field)
  local t = cache[field]
  if t == nil then
    local raw = call('HGET', key, field)
    if raw then
      t = {struct.unpack(fmt, raw)}
      t[S + 1] = nil  -- struct.unpack returns the next position last
    else
      t = {}
      for s = 1, S do
        local k = kinds[s]
        t[s] = (k == 'm' and inf) or (k == 'M' and -inf) or (k == 't' and -inf) or (k == 'l' and 0 / 0) or 0
      end
    end
    cache[field] = t
  end
  return t
end

local function advance(i, index)
  if newest[i] == nil or index > newest[i] then newest[i] = index end
end

local applied = 0
local nin = 0
for _, x in ipairs(inputs) do if x + 1 > nin then nin = x + 1 end end
if mode == 'e' then
  local stride = 3 + nin
  local marks = {}
  for e = 0, count - 1 do
    local base = 7 + e * stride
    local part, offset, time = ARGV[base], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
    local mark = marks[part]
    if mark == nil then mark = tonumber(call('HGET', key, '_o:' .. part) or '-1') end
    if offset > mark then
      marks[part] = offset
      local v = {}
      for j = 1, nin do v[j] = tonumber(ARGV[base + 2 + j]) end
      for i, g in ipairs(grans) do
        local index = floor(time / g.size)
        if index >= low[i] then
          local t = tile(g.tag .. ':' .. string.format('%d', index))
          for s = 1, S do
            local k, x = kinds[s], inputs[s]
            local val = x >= 0 and v[x + 1] or nil
            if k == 'n' then
              if x < 0 or val ~= nil then t[s] = t[s] + 1 end
            elseif val ~= nil then
              if k == 's' then t[s] = t[s] + val
              elseif k == 'q' then t[s] = t[s] + val * val
              elseif k == 'm' then if val < t[s] then t[s] = val end
              elseif k == 'M' then if val > t[s] then t[s] = val end
              elseif k == 't' then
                -- the 'l' slot of the same input follows its 't' slot (layout order)
                local lt = t[s + 1]
                if time > t[s] or (time == t[s] and (lt ~= lt or val > lt)) then
                  t[s] = time
                  t[s + 1] = val
                end
              end
            end
          end
          advance(i, index)
        end
      end
      applied = applied + 1
    else
      marks[part] = mark
    end
  end
  for part, mark in pairs(marks) do call('HSET', key, '_o:' .. part, string.format('%d', mark)) end
else
  local bytag = {}
  for i, g in ipairs(grans) do bytag[g.tag] = i end
  for e = 0, count - 1 do
    local base = 7 + e * 3
    local i, index, record = bytag[ARGV[base]], tonumber(ARGV[base + 1]), ARGV[base + 2]
    if i ~= nil and index >= low[i] and #record == S * 8 then
      local field = ARGV[base] .. ':' .. string.format('%d', index)
      local old = call('HGET', key, field)
      if old == nil or old == false or struct.unpack('<d', old) <= struct.unpack('<d', record) then
        call('HSET', key, field, record)
        cache[field] = nil
        applied = applied + 1
      end
      advance(i, index)
    end
  end
end

for field, t in pairs(cache) do call('HSET', key, field, struct.pack(fmt, unpack(t))) end

local expire = nil
for i, g in ipairs(grans) do
  if newest[i] ~= nil then
    local floor_i = newest[i] - g.tiles
    call('HSET', key, '_n:' .. g.tag, string.format('%d', newest[i]))
    if low[i] == -inf or floor_i > low[i] then
      local prefix = g.tag .. ':'
      for _, f in ipairs(call('HKEYS', key)) do
        if string.sub(f, 1, #prefix) == prefix and tonumber(string.sub(f, #prefix + 1)) < floor_i then
          call('HDEL', key, f)
        end
      end
    end
    local until_ms = (newest[i] + g.tiles + 1) * g.size / 1000
    if expire == nil or until_ms > expire then expire = until_ms end
  end
end
if expires and expire ~= nil then call('PEXPIREAT', key, string.format('%d', math.ceil(expire))) end
return applied
