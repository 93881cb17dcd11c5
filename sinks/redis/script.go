package redissink

import (
	"crypto/sha1"
	"encoding/hex"
)

// applyScript applies a chunk of row changes, each only if it is newer than what
// Redis holds. The rows are applied in order, each exactly as if it were the only one
// in the call; a chunk holds rows of one instance (and database) only.
//
//	KEYS[2i-1]  row i's key          KEYS[2i]  row i's tombstone key
//	ARGV[1]     tombstone TTL in ms ("0": no expiry)
//	ARGV[2…]    per row, in KEYS order, a header and its values:
//	  op        "u" upsert, "d" versioned delete, "x" delete of unknown version (a
//	            lone tombstone record)
//	  version   decimal, no leading zeros
//	  layout    "h" hash or "j" JSON
//	  sets      the row's set memberships after the change, as netstrings
//	            (set key, member, set key, member, …)
//	  n         how many values follow
//	  values    hash: field, value, …; JSON: the value
//
// It returns an array with one element per row: 0 when the change is not newer
// (nothing written), 1 after an upsert, 2 after a delete, or an error reply starting
// with "KANAL " when the row cannot be applied (nothing written for that row; the
// other rows are still applied). The current version is the row's "__v", or the
// tombstone's when that is newer. The old memberships come from the stored row itself,
// so a delete that only has the key (a tombstone on a compacted topic) still leaves
// every set.
//
// Versions are compared as decimal strings (length, then bytes), so they are exact to
// 2^64-1 whatever Lua's number type is. Set keys are not declared in KEYS: the script
// runs on standalone Redis, not Redis Cluster (see docs/redis.md).
const applyScript = `
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function decode(s)
  local out = {}
  if not s then return out end
  local i = 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    if not c then return redis.error_reply('KANAL corrupt __sets') end
    local n = tonumber(string.sub(s, i, c - 1))
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

local ttl = tonumber(ARGV[1])

-- apply one row; its values are ARGV[first..last]
local function apply(key, tomb, op, ver, layout, sets, first, last)
  local cur, oldsets = '0', nil
  local typ = redis.call('TYPE', key)['ok']
  if typ == 'hash' then
    local got = redis.call('HMGET', key, '__v', '__sets')
    if got[1] then cur = got[1] end
    oldsets = got[2]
  elseif typ == 'string' then
    local v = redis.call('GET', key)
    local m = string.match(v, '^{"__v":(%d+)')
    if m then cur = m end
    if string.find(v, '"__sets":', 1, true) then
      local ok, obj = pcall(cjson.decode, v)
      if ok and type(obj) == 'table' and type(obj['__sets']) == 'string' then oldsets = obj['__sets'] end
    end
  elseif typ ~= 'none' then
    return redis.error_reply('KANAL WRONGTYPE the row key holds a ' .. typ)
  end
  local t = false
  if op ~= 'x' then
    t = redis.call('GET', tomb)
    if t and newer(t, cur) then cur = t end
    if not newer(ver, cur) then return 0 end
  end

  local old = decode(oldsets)
  if type(old) ~= 'table' then return old end
  local new = {}
  if op == 'u' then
    new = decode(sets)
    if type(new) ~= 'table' then return new end
  end
  if #old > 0 then
    local keep = {}
    for i = 1, #new, 2 do keep[new[i] .. '\0' .. new[i + 1]] = true end
    for i = 1, #old, 2 do
      if not keep[old[i] .. '\0' .. old[i + 1]] then redis.call('SREM', old[i], old[i + 1]) end
    end
  end
  for i = 1, #new, 2 do redis.call('SADD', new[i], new[i + 1]) end

  if op == 'u' then
    if typ ~= 'none' then redis.call('DEL', key) end
    if layout == 'h' then
      for i = first, last, 200 do
        redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
      end
    else
      redis.call('SET', key, ARGV[first])
    end
    if t then redis.call('DEL', tomb) end
    return 1
  end
  if typ ~= 'none' then redis.call('DEL', key) end
  if op == 'd' then
    if ttl > 0 then
      redis.call('SET', tomb, ver, 'PX', ttl)
    else
      redis.call('SET', tomb, ver)
    end
  end
  return 2
end

local out = {}
local a = 2
for r = 1, #KEYS / 2 do
  local n = tonumber(ARGV[a + 4])
  out[r] = apply(KEYS[2 * r - 1], KEYS[2 * r], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], a + 5, a + 4 + n)
  a = a + 5 + n
end
return out
`

// applySHA is the SHA-1 Redis knows the script by.
var applySHA = func() string {
	s := sha1.Sum([]byte(applyScript))
	return hex.EncodeToString(s[:])
}()
