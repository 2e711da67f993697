-- Tiles of one (entity, aggregation view): a hash, updated atomically. See fs/aggregation/tiles.py
-- for the layout and docs/aggregations.md for the semantics.
--   field "t": the tiles, one fixed-size string of little-endian doubles: per tile size (in the order
--              given), a ring of R records (R = the longest window's tiles + 1); a record is the tile's
--              index then its S slot values; tile k lives at ring position k mod R, and a record whose
--              index is not the tile asked for is empty (-inf: never written)
--   field "_fp": layout fingerprint; "_o:<partition>": the last Kafka offset applied
-- KEYS[1]: the hash. ARGV[1] fingerprint, ARGV[2] mode ("e" events | "t" tiles; upper case: the same
-- without key expiry, for replays of history into a scratch namespace), ARGV[3] slot kinds
-- (one char per slot: n count, s sum, q M2, m min, M max, t/l latest time and value), ARGV[4] slot inputs ("-1,0,..."), ARGV[5] tile sizes
-- ("tile_us:tiles:tag,..."), ARGV[6] number of items, then the items:
--   mode e: partition, offset, time_us, one value per input ("" = null), per event. An event whose
--           offset is at or below its partition's mark is a redelivery and changes nothing.
--   mode t: tag, tile index, record (S doubles), per tile (a batch rebuild from the raw events):
--           replaces the stored tile unless that one counted more events (the stream is ahead).
-- A tile older than the ring (a newer tile holds its position) can never be read again (reads are at
-- the present) and is not applied. The key expires when its newest tile leaves every window.
-- Returns the number of events (mode e) or tiles (mode t) applied.
local key = KEYS[1]
local call, tonumber, floor = redis.call, tonumber, math.floor
local fp, mode = ARGV[1], string.lower(ARGV[2])
local expires = ARGV[2] == mode
local kinds, inputs = {}, {}
for c in string.gmatch(ARGV[3], '.') do kinds[#kinds + 1] = c end
for x in string.gmatch(ARGV[4], '[^,]+') do inputs[#inputs + 1] = tonumber(x) end
local S = #kinds
local W = S + 1
-- 'q' is the sum of squared deviations from the tile's mean (M2, updated as Welford's): it needs the
-- count and sum of its input, which always come before it in the layout
local npos, spos = {}, {}
for s = 1, S do
  if kinds[s] == 'n' then npos[inputs[s]] = s elseif kinds[s] == 's' then spos[inputs[s]] = s end
end
local inf = 1 / 0
local grans, total = {}, 0
for g, n, tag in string.gmatch(ARGV[5], '(%d+):(%d+):(%d+)') do
  local ring = tonumber(n) + 1
  grans[#grans + 1] = {size = tonumber(g), tiles = tonumber(n), ring = ring, tag = tag, base = total}
  total = total + ring
end
local count = tonumber(ARGV[6])
local fmt = '<' .. string.rep('d', total * W)

local kind = call('TYPE', key)['ok']
if kind ~= 'hash' and kind ~= 'none' then call('DEL', key) end  -- a row of the view before it aggregated
local blob = nil
if call('HGET', key, '_fp') == fp then blob = call('HGET', key, 't') end
local v
if blob and #blob == total * W * 8 then
  v = {struct.unpack(fmt, blob)}
  v[total * W + 1] = nil  -- struct.unpack returns the next position last
else
  if blob ~= nil then call('DEL', key) end  -- another layout (the view's aggregations changed)
end

local function reset(at, index)
  v[at + 1] = index
  for s = 1, S do
    local k = kinds[s]
    v[at + 1 + s] = (k == 'm' and inf) or (k == 'M' and -inf) or (k == 't' and -inf) or (k == 'l' and 0 / 0) or 0
  end
end

if v == nil then
  v = {}
  for r = 0, total - 1 do reset(r * W, -inf) end
end

-- Position (0-based, in doubles) of tile ``index`` of tile size ``g``, reset if a older tile held it;
-- nil if a newer tile holds it (the tile is out of the ring).
local function record(g, index)
  local at = (g.base + index % g.ring) * W
  local held = v[at + 1]
  if held == index then return at end
  if held > index then return nil end
  reset(at, index)
  return at
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
    if mark == nil then
      mark = tonumber(call('HGET', key, '_o:' .. part) or '-1')
      marks[part] = mark
    end
    if offset > mark then
      marks[part] = offset
      local x = {}
      for j = 1, nin do x[j] = tonumber(ARGV[base + 2 + j]) end
      for _, g in ipairs(grans) do
        local at = record(g, floor(time / g.size))
        if at ~= nil then
          for s = 1, S do
            local k, i = kinds[s], inputs[s]
            local val = i >= 0 and x[i + 1] or nil
            local p = at + 1 + s
            if k == 'n' then
              if i < 0 or val ~= nil then v[p] = v[p] + 1 end
            elseif val ~= nil then
              if k == 's' then v[p] = v[p] + val
              elseif k == 'q' then
                local n, sum = v[at + 1 + npos[i]], v[at + 1 + spos[i]]  -- already include this event
                if n > 1 then v[p] = v[p] + (val - (sum - val) / (n - 1)) * (val - sum / n) end
              elseif k == 'm' then if val < v[p] then v[p] = val end
              elseif k == 'M' then if val > v[p] then v[p] = val end
              elseif k == 't' then
                -- the 'l' slot of the same input follows its 't' slot (layout order)
                local lv = v[p + 1]
                if time > v[p] or (time == v[p] and (lv ~= lv or val > lv)) then
                  v[p] = time
                  v[p + 1] = val
                end
              end
            end
          end
        end
      end
      applied = applied + 1
    end
  end
  for part, mark in pairs(marks) do call('HSET', key, '_o:' .. part, string.format('%d', mark)) end
else
  local bytag = {}
  for _, g in ipairs(grans) do bytag[g.tag] = g end
  for e = 0, count - 1 do
    local base = 7 + e * 3
    local g, index, raw = bytag[ARGV[base]], tonumber(ARGV[base + 1]), ARGV[base + 2]
    if g ~= nil and #raw == S * 8 then
      local at = (g.base + index % g.ring) * W
      local held = v[at + 1]
      local new = {struct.unpack('<' .. string.rep('d', S), raw)}
      -- slot 1 counts the tile's events: a stored tile that counted more stays (the stream is ahead)
      if held < index or (held == index and v[at + 2] <= new[1]) then
        v[at + 1] = index
        for s = 1, S do v[at + 1 + s] = new[s] end
        applied = applied + 1
      end
    end
  end
end

call('HSET', key, 't', struct.pack(fmt, unpack(v)), '_fp', fp)

local expire = nil
for _, g in ipairs(grans) do
  local newest = -inf
  for r = 0, g.ring - 1 do
    local index = v[(g.base + r) * W + 1]
    if index > newest then newest = index end
  end
  if newest > -inf then
    local until_ms = (newest + g.tiles + 1) * g.size / 1000
    if expire == nil or until_ms > expire then expire = until_ms end
  end
end
if expires and expire ~= nil then call('PEXPIREAT', key, string.format('%d', math.ceil(expire))) end
return applied
