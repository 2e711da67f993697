-- Event-time-ordered upsert of (entity, feature view) rows; one call per batch of keys that
-- share a slot (standalone: any keys). KEYS[i]: row key. ARGV[1]: the view's ttl in
-- microseconds (0 = none). ARGV[2]: the key expiry of key_ttl_seconds, an absolute time in ms
-- (0 = none). ARGV[i + 2]: encoded row "[event_us,created_us,...]" for KEYS[i].
-- A row is written only if (event_us, created_us) is strictly greater than the stored one, or
-- equal with other values (a correction recomputed at unchanged times, e.g. an offline backfill
-- then a materialization: the last write wins). Older events and redeliveries (the same row)
-- are no-ops and retries of a whole batch are safe. Rows are applied in order, so a key present
-- twice in one call ends at the greater of its rows.
-- A written key expires at ceil((event_us + ttl) / 1000) ms (PXAT), the instant it stops
-- being served, or at ARGV[2] if that is earlier. Returns the number of rows written.
local ttl = tonumber(ARGV[1])
local key_at = tonumber(ARGV[2])
local match, tonumber, call = string.match, tonumber, redis.call
local pattern = '^%[(%-?%d+),(%-?%d+),'
local written = 0
for i = 1, #KEYS do
  local row = ARGV[i + 2]
  local ev, ct = match(row, pattern)
  if not ev then
    return redis.error_reply('fs: row to write has an unknown format')
  end
  local newer = true
  local old = call('GET', KEYS[i])
  if old then
    local oev, oct = match(old, pattern)
    if not oev then
      return redis.error_reply('fs: stored online row has an unknown format')
    end
    -- integers are canonical decimals, so equal strings are equal numbers (redelivery: no
    -- number parsing at all); microsecond times are far below 2^53, exact as Lua numbers
    if ev == oev then
      if ct == oct then
        newer = row ~= old
      else
        newer = tonumber(ct) > tonumber(oct)
      end
    else
      newer = tonumber(ev) > tonumber(oev)
    end
  end
  if newer then
    local at = 0
    if ttl > 0 then
      at = math.ceil((tonumber(ev) + ttl) / 1000)
    end
    if key_at > 0 and (at == 0 or key_at < at) then
      at = key_at
    end
    if at > 0 then
      call('SET', KEYS[i], row, 'PXAT', string.format('%d', at))
    else
      call('SET', KEYS[i], row)
    end
    written = written + 1
  end
end
return written
