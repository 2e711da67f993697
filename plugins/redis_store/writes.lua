-- Event-time-ordered upsert of (entity, feature view) rows; one call per batch of keys that
-- share a slot. KEYS[i]: row key. ARGV[2i-1]: absolute expiry in ms (0 = none).
-- ARGV[2i]: encoded row "[event_us,created_us,...]".
-- A row is written only if (event_us, created_us) is strictly greater than the stored one, so
-- older events and redeliveries are no-ops and retries of a whole batch are safe.
-- Returns the number of rows written.
local written = 0
for i = 1, #KEYS do
  local row = ARGV[2 * i]
  local ev, ct = string.match(row, '^%[(%-?%d+),(%-?%d+),')
  ev, ct = tonumber(ev), tonumber(ct)
  local newer = true
  local old = redis.call('GET', KEYS[i])
  if old then
    local oev, oct = string.match(old, '^%[(%-?%d+),(%-?%d+),')
    if not oev then
      return redis.error_reply('fs: stored online row has an unknown format')
    end
    oev, oct = tonumber(oev), tonumber(oct)
    newer = ev > oev or (ev == oev and ct > oct)
  end
  if newer then
    local exp = tonumber(ARGV[2 * i - 1])
    if exp > 0 then
      redis.call('SET', KEYS[i], row, 'PXAT', exp)
    else
      redis.call('SET', KEYS[i], row)
    end
    written = written + 1
  end
end
return written
