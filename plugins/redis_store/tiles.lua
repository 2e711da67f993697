-- Tiles of one (entity, aggregation view), updated atomically. See fs/aggregation/tiles.py for the
-- layout and docs/aggregations.md for the semantics. One string per entity:
--   little-endian doubles: the layout fingerprint, the newest tile index per tile size, then per tile
--     size (in the order given) a ring of R records (R = the longest window's tiles + 1); a record is
--     the tile's index then its S slot values; tile k lives at ring position k mod R, and a record
--     whose index is not the tile asked for is empty (-inf: never written). Anything else under the
--     key (another layout, a row of the view before it aggregated) is replaced. Read by the same MGET
--     as plain views' rows, which take this fixed-size part;
--   then the offset marks: "<partition>=<last Kafka offset applied>;" per partition, sorted.
-- KEYS: per entity its tiles key then its legacy marks key (a hash "_o:<partition>" -> offset, where
-- earlier versions kept the marks: folded into the string on the entity's next write, then deleted).
-- One call serves many entities: the set-up below is paid once; Cluster: keys of one slot.
-- ARGV[1] fingerprint, ARGV[2] mode ("b" blocks | "t" tiles; upper case: the same without key expiry,
-- for replays of history into a scratch namespace), ARGV[3] slot
-- kinds (one char per slot: n count, s sum, q M2, m min, M max, t/l latest time and value, h 8 sketch
-- registers as base-64 digits, fs/aggregation/sketch.py), ARGV[4] slot inputs ("-1,0,..."),
-- ARGV[5] tile sizes ("tile_us:tiles:tag,..."), then per key in KEYS order: its number of items, then
-- the items:
--   mode t: tag, tile index, record (S doubles), per tile (a batch rebuild from the raw events):
--           replaces the stored tile unless that one counted more events (the stream is ahead).
--   mode b: the events pre-aggregated by the caller into blocks, one per Kafka partition: partition,
--           then the block packed as little-endian doubles: first offset, last offset, number of
--           events, number of tiles, then per tile: tile size (0-based position in ARGV[5]), tile
--           index, record (S doubles, merged into the stored tile). A block entirely at or below its
--           partition's mark is a redelivery (skipped), one entirely above it is applied; one that
--           straddles the mark (a replay that starts mid-block) is not applied and the key is returned,
--           for the caller to send again with one block per event.
-- A tile older than the ring (a newer tile holds its position) can never be read again (reads are at
-- the present) and is not applied. The key expires when its newest tile leaves every window.
-- Returns {events or tiles applied, keys to resend event by event (mode b)}.
local call, tonumber = redis.call, tonumber
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
local G = #grans
local fpnum = tonumber(fp)
local head_fmt, rec_fmt = '<' .. string.rep('d', 1 + G), '<' .. string.rep('d', W)
local H = 1 + G  -- doubles before the records: the fingerprint and the newest tile per size
local size = (H + total * W) * 8
local head_last, size_text = string.format('%d', H * 8 - 1), string.format('%d', size)
local offsets_text = {}  -- ring position -> its record's first and last byte, as command arguments
local function offset_text(r)
  local at = offsets_text[r]
  if at == nil then
    local first = (H + r * W) * 8
    at = {string.format('%d', first), string.format('%d', first + W * 8 - 1)}
    offsets_text[r] = at
  end
  return at
end

local blank = {}  -- an empty tile's slots
for s = 1, S do
  local k = kinds[s]
  blank[s] = (k == 'm' and inf) or (k == 'M' and -inf) or (k == 't' and -inf) or (k == 'l' and 0 / 0) or 0
end
local function reset(t, index)
  t[1] = index
  for s = 1, S do t[1 + s] = blank[s] end
end
local empty_record = struct.pack(rec_fmt, -inf, unpack(blank))
local image = nil
local function empty_image()  -- the string of an entity with no tiles yet (its header is replaced)
  if image == nil then image = string.rep('\0', H * 8) .. string.rep(empty_record, total) end
  return image
end
local bytag = {}
for gi, g in ipairs(grans) do bytag[g.tag] = gi end
local slot_fmt = '<' .. string.rep('d', S)
local tile_fmt = '<' .. string.rep('d', S + 2)  -- mode b: tile size, tile index, slots

-- Merges a tile record (S values at ``d[o + 1 .. o + S]``) into the stored record ``v`` (index, then S
-- values) of the same tile. M2 (q) is pooled first, from the counts and sums before the merge.
-- The slots by kind, so a merge runs one tight loop per kind (no per-slot dispatch).
local qslots, adds, mins, maxs, lasts, hlls = {}, {}, {}, {}, {}, {}
for s = 1, S do
  local k = kinds[s]
  if k == 'q' then qslots[#qslots + 1] = s
  elseif k == 'n' or k == 's' then adds[#adds + 1] = s
  elseif k == 'm' then mins[#mins + 1] = s
  elseif k == 'M' then maxs[#maxs + 1] = s
  elseif k == 't' then lasts[#lasts + 1] = s
  elseif k == 'h' then hlls[#hlls + 1] = s end
end
local Q, A, MI, MA, L, HL = #qslots, #adds, #mins, #maxs, #lasts, #hlls
local function merge(v, d, o)
  for j = 1, Q do
    local s = qslots[j]
    local i = inputs[s]
    local na, nb = v[1 + npos[i]], d[o + npos[i]]
    if nb > 0 then
      if na > 0 then
        local delta = d[o + spos[i]] / nb - v[1 + spos[i]] / na
        v[1 + s] = v[1 + s] + d[o + s] + delta * delta * na * nb / (na + nb)
      else
        v[1 + s] = d[o + s]
      end
    end
  end
  for j = 1, A do local s = adds[j]; v[1 + s] = v[1 + s] + d[o + s] end
  for j = 1, MI do local s = mins[j]; local x = d[o + s]; if x < v[1 + s] then v[1 + s] = x end end
  for j = 1, MA do local s = maxs[j]; local x = d[o + s]; if x > v[1 + s] then v[1 + s] = x end end
  for j = 1, L do  -- the latest input: its time at s, its value at s + 1 (ties: the larger value)
    local s = lasts[j]
    local p, x = 1 + s, d[o + s]
    local vl = v[p + 1]
    if x > v[p] or (x == v[p] and x > -inf and (vl ~= vl or d[o + s + 1] > vl)) then
      v[p] = x
      v[p + 1] = d[o + s + 1]
    end
  end
  for j = 1, HL do  -- register-wise maximum of 8 base-64 digits (exact integers)
    local p = 1 + hlls[j]
    local x = d[o + hlls[j]]
    if x > 0 then
      local a = v[p]
      if a == 0 then v[p] = x else
        local out, scale = 0, 1
        for _ = 1, 8 do
          local da, dx = a % 64, x % 64
          out = out + (da > dx and da or dx) * scale
          a, x, scale = (a - da) / 64, (x - dx) / 64, scale * 64
        end
        v[p] = out
      end
    end
  end
end

-- Applies the items starting at ARGV[pos + 1] (ARGV[pos]: their number) to one key; returns how many
-- were applied and the position of the next key's count.
local function apply(key, marks_key, pos)
local count = tonumber(ARGV[pos])

local blocks, next_pos, tiles_in = {}, nil, count  -- tiles_in: the tiles the items carry
if mode == 'b' then
  local at = pos + 1
  tiles_in = 0
  for b = 1, count do
    local data = ARGV[at + 1]
    local first, last, events, tiles = struct.unpack('<dddd', data)
    local block = {part = ARGV[at], first = first, last = last, events = events, tiles = tiles, data = data}
    blocks[b] = block
    tiles_in = tiles_in + tiles
    at = at + 2
  end
  next_pos = at
end
-- Only the parts the call needs are read (GETRANGE): the header, the marks and the records it merges
-- into. Reading the whole string costs more when a call merges few tiles: Redis hashes every byte of a
-- string that enters Lua (~2 ns a byte, ~10 us for a 5 KB key, vs ~0.7 us a GETRANGE); when it merges
-- many (a backlog: a block spanning many tiles), one GET is cheaper.
local blob, head, old_trailer = nil, nil, ''
if tiles_in * 384 > size then
  blob = redis.pcall('GET', key)
  head = type(blob) == 'string' and string.sub(blob, 1, H * 8) or nil
else
  head = redis.pcall('GETRANGE', key, '0', head_last)
end
local exists = type(head) == 'string' and #head == H * 8 and struct.unpack('<d', head) == fpnum
if exists and blob then
  exists = #blob >= size
  old_trailer = exists and string.sub(blob, size + 1) or ''
elseif exists then
  old_trailer = call('GETRANGE', key, size_text, '-1')
  if old_trailer == '' and call('STRLEN', key) < size then
    exists = false  -- shorter than the layout: start over
  end
end
-- (not exists: nothing yet, another layout, or another type: start over, marks included: the tiles of
-- a new layout have counted nothing yet)
local marks, legacy = {}, false  -- partition -> last offset applied
if old_trailer ~= '' then
  for part, offset in string.gmatch(old_trailer, '([^=;]+)=(%-?%d+);') do
    marks[part] = tonumber(offset)
  end
elseif exists and mode == 'b' then  -- written by an earlier version: its marks are in the hash
  local flat = redis.pcall('HGETALL', marks_key)
  if type(flat) == 'table' and not flat.err then
    for i = 1, #flat, 2 do marks[string.sub(flat[i], 4)] = tonumber(flat[i + 1]) end
    legacy = #flat > 0
  end
end

local newest = {}
if exists then
  newest = {struct.unpack(head_fmt, head)}
  table.remove(newest, 1)  -- the fingerprint
  newest[G + 1] = nil  -- struct.unpack returns the next position last
else
  for i = 1, G do newest[i] = -inf end
end

-- Records are read only when touched (a call usually touches one per tile size), and not at all when
-- the tile asked for is newer than every stored one (``fresh``: its ring position holds an older tile).
local recs, touched = {}, {}
local function load(r, fresh)
  local t = recs[r]
  if t == nil then
    if exists and not fresh then
      if blob then
        t = {struct.unpack(rec_fmt, blob, (H + r * W) * 8 + 1)}
      else
        local at = offset_text(r)
        t = {struct.unpack(rec_fmt, call('GETRANGE', key, at[1], at[2]))}
      end
      t[W + 1] = nil
    else
      t = {}
      reset(t, -inf)
    end
    recs[r] = t
  end
  return t
end

-- The record of tile ``index`` of tile size ``g`` (reset if an older tile held its ring position),
-- or nil if a newer tile holds it (the tile is out of the ring).
local function record(g, gi, index)
  local r = g.base + index % g.ring
  local t = load(r, index > newest[gi])
  if t[1] == index then
    touched[r] = true
    return t
  end
  if t[1] > index then return nil end
  reset(t, index)
  touched[r] = true
  return t
end

local applied = 0
local first_newest = {}
for i = 1, G do first_newest[i] = newest[i] end
local resend = false
if mode == 'b' then
  for _, block in ipairs(blocks) do
    local mark = marks[block.part] or -1
    if block.first > mark then
      local data = block.data
      for t = 0, block.tiles - 1 do
        local d = {struct.unpack(tile_fmt, data, 33 + t * (S + 2) * 8)}
        local gi, index = d[1] + 1, d[2]
        local v = record(grans[gi], gi, index)
        if v ~= nil then
          if index > newest[gi] then newest[gi] = index end
          merge(v, d, 2)
        end
      end
      mark = block.last
      applied = applied + block.events
    elseif block.last > mark then
      resend = true  -- straddles the mark: only event by event is exact
    end
    marks[block.part] = mark
  end
else
  for e = 0, count - 1 do
    local base = pos + 1 + e * 3
    local gi, index, raw = bytag[ARGV[base]], tonumber(ARGV[base + 1]), ARGV[base + 2]
    if gi ~= nil and #raw == S * 8 then
      local g = grans[gi]
      local r = g.base + index % g.ring
      local v = load(r)
      local new = {struct.unpack(slot_fmt, raw)}
      -- slot 1 counts the tile's events: a stored tile that counted more stays (the stream is ahead)
      if v[1] < index or (v[1] == index and v[2] <= new[1]) then
        v[1] = index
        for s = 1, S do v[1 + s] = new[s] end
        touched[r] = true
        if index > newest[gi] then newest[gi] = index end
        applied = applied + 1
      end
    end
  end
end

-- The marks, after the records: sorted, so the same marks are the same bytes.
local names = {}
for part in pairs(marks) do names[#names + 1] = part end
table.sort(names)
local trailer = {}
for _, part in ipairs(names) do trailer[#trailer + 1] = part .. '=' .. string.format('%d', marks[part]) .. ';' end
trailer = table.concat(trailer)

-- Write back. An existing string is patched in place (SETRANGE of the header, of each run of touched
-- records and of the marks if they moved: a call writes a few hundred bytes, not the whole ring, and
-- keeps the key's TTL); a new one (another layout, marks of another length) is written whole, from the
-- stored string or an empty ring with the touched records spliced in.
local header = struct.pack(head_fmt, fpnum, unpack(newest))
local order = {}
for r in pairs(touched) do order[#order + 1] = r end
table.sort(order)
local whole = nil
if exists and #trailer == #old_trailer then  -- (growing a string by SETRANGE over-allocates: SET it)
  local moved_newest = false
  for gi = 1, G do if newest[gi] ~= first_newest[gi] then moved_newest = true end end
  if moved_newest then call('SETRANGE', key, '0', header) end
  local i = 1
  while i <= #order do
    local j, run = i, {struct.pack(rec_fmt, unpack(recs[order[i]]))}
    while j < #order and order[j + 1] == order[j] + 1 do
      j = j + 1
      run[#run + 1] = struct.pack(rec_fmt, unpack(recs[order[j]]))
    end
    call('SETRANGE', key, offset_text(order[i])[1], table.concat(run))
    i = j + 1
  end
  if trailer ~= old_trailer then call('SETRANGE', key, size_text, trailer) end
else
  local src = exists and (blob or call('GET', key)) or empty_image()
  local parts, at = {header}, H * 8  -- at: bytes of src consumed
  for _, r in ipairs(order) do
    local start = (H + r * W) * 8
    if start > at then parts[#parts + 1] = string.sub(src, at + 1, start) end
    parts[#parts + 1] = struct.pack(rec_fmt, unpack(recs[r]))
    at = start + W * 8
  end
  if at < size then parts[#parts + 1] = string.sub(src, at + 1, size) end
  parts[#parts + 1] = trailer
  whole = table.concat(parts)
end

-- The key expires when the newest tile leaves every window: a write that does not move that time
-- keeps the TTL as it is (the 24 h tile moves once an hour).
local function expiry(tiles_at)
  local at = nil
  for gi, g in ipairs(grans) do
    if tiles_at[gi] > -inf then
      local until_ms = (tiles_at[gi] + g.tiles + 1) * g.size / 1000
      if at == nil or until_ms > at then at = until_ms end
    end
  end
  return at
end
local expire = expiry(newest)
if whole then
  if not expires or expire == nil then
    call('SET', key, whole)
  else
    call('SET', key, whole, 'PXAT', string.format('%d', math.ceil(expire)))
  end
elseif not expires or expire == nil then
  call('PERSIST', key)
elseif expire ~= expiry(first_newest) then
  call('PEXPIREAT', key, string.format('%d', math.ceil(expire)))
end
if legacy then call('DEL', marks_key) end
return applied, next_pos or (pos + 1 + count * 3), resend
end

local pos, result = 6, {0}
for k = 1, #KEYS, 2 do
  local n, resend
  n, pos, resend = apply(KEYS[k], KEYS[k + 1], pos)
  result[1] = result[1] + n
  if resend then result[#result + 1] = KEYS[k] end
end
return result
