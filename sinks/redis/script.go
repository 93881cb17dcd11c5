package redissink

import (
	"crypto/sha1"
	"encoding/hex"
)

// applyScript applies a chunk of row changes, each only if it is newer than what
// Redis holds; a chunk holds rows of one instance (and database) only, each row key
// at most once (Handle keeps only a row's last change of a batch).
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
// with "KANAL " when the row cannot be applied: the row key or its tombstone holds
// another type, or "__sets" is corrupt (nothing written for that row), or a set key
// holds another type (the row and its other set commands are written). The other
// rows are still applied: set commands and the tombstone read use redis.pcall, so
// one bad key cannot abort the call and leave the rows after it unapplied.
//
// The rows are distinct keys, so applying them one after the other in one call is
// the same as applying each on its own. Per row, the current version is the stored
// row's "__v" (one HMGET, or GET for the JSON layout; TYPE only when the key holds
// the other layout or a foreign type), or, when the row does not exist, its
// tombstone's. A tombstone is older than its row when both exist (a delete removes
// the row; the fenced path leaves the tombstone of a re-created row to expire,
// see appendDelKeys), so an existing row needs no tombstone read. The old memberships come from the stored row itself ("__sets"),
// so a delete that only has the key (a tombstone on a compacted topic) still leaves
// every set; set commands are issued only for memberships that change.
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
  if not s or s == '' then return out end
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
local function fromjson(v)
  local cur, sets = '0', nil
  local m = string.match(v, '^{"__v":(%d+)')
  if m then cur = m end
  if string.find(v, '"__sets":', 1, true) then
    local ok, obj = pcall(cjson.decode, v)
    if ok and type(obj) == 'table' and type(obj['__sets']) == 'string' then sets = obj['__sets'] end
  end
  return cur, sets
end
local ttl = tonumber(ARGV[1])
local function stored(key, layout)
  if layout == 'h' then
    local got = redis.pcall('HMGET', key, '__v', '__sets')
    if not got.err then
      if got[1] then return true, got[1], got[2] end
      return nil, '0', got[2]
    end
  else
    local v = redis.pcall('GET', key)
    if not v then return false, '0', nil end
    if type(v) == 'string' then
      local cur, sets = fromjson(v)
      return true, cur, sets
    end
  end
  local typ = redis.call('TYPE', key)['ok']
  if typ == 'hash' then
    local got = redis.call('HMGET', key, '__v', '__sets')
    return true, got[1] or '0', got[2]
  elseif typ == 'string' then
    local cur, sets = fromjson(redis.call('GET', key))
    return true, cur, sets
  elseif typ == 'none' then
    return false, '0', nil
  end
  return redis.error_reply('KANAL WRONGTYPE the row key holds a ' .. typ)
end
local function write(key, tomb, op, ver, layout, first, last, exists, t)
  if op == 'u' then
    if layout == 'h' then
      if exists then redis.call('DEL', key) end
      local added = 0
      for i = first, last, 200 do
        added = added + redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
      end
      if exists == nil and added * 2 < last - first + 1 then
        redis.call('DEL', key)
        for i = first, last, 200 do
          redis.call('HSET', key, unpack(ARGV, i, math.min(i + 199, last)))
        end
      end
    else
      redis.call('SET', key, ARGV[first])
    end
    if t then redis.call('DEL', tomb) end
    return 1
  end
  if exists ~= false then redis.call('DEL', key) end
  if op == 'd' then
    if ttl > 0 then
      redis.call('SET', tomb, ver, 'PX', ttl)
    else
      redis.call('SET', tomb, ver)
    end
  end
  return 2
end
local function apply(key, tomb, op, ver, layout, sets, first, last)
  local exists, cur, oldsets = stored(key, layout)
  if type(exists) == 'table' then return exists end
  local t = false
  if op ~= 'x' then
    if not exists then
      t = redis.pcall('GET', tomb)
      if type(t) == 'table' then return redis.error_reply('KANAL WRONGTYPE the tombstone key holds another type') end
      if t and newer(t, cur) then cur = t end
    end
    if not newer(ver, cur) then return 0 end
  end
  local failed = nil
  if oldsets or sets ~= '' then
    local old = decode(oldsets)
    if type(old) ~= 'table' then return old end
    local new = {}
    if op == 'u' then
      new = decode(sets)
      if type(new) ~= 'table' then return new end
    end
    local had = {}
    for i = 1, #old, 2 do had[old[i] .. '\0' .. old[i + 1]] = true end
    local keep = {}
    for i = 1, #new, 2 do
      local m = new[i] .. '\0' .. new[i + 1]
      keep[m] = true
      if not had[m] then
        local res = redis.pcall('SADD', new[i], new[i + 1])
        if type(res) == 'table' and res.err then failed = res.err .. ' (set ' .. new[i] .. ')' end
      end
    end
    for i = 1, #old, 2 do
      if not keep[old[i] .. '\0' .. old[i + 1]] then
        local res = redis.pcall('SREM', old[i], old[i + 1])
        if type(res) == 'table' and res.err then failed = res.err .. ' (set ' .. old[i] .. ')' end
      end
    end
  end
  local done = write(key, tomb, op, ver, layout, first, last, exists, t)
  if failed then return redis.error_reply('KANAL ' .. failed) end
  return done
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

// setsScript moves rows of a fenced transaction between their secondary sets, before
// the transaction replaces the rows with plain commands. It reads each row's old
// memberships from the stored row ("__sets"), not from the change's before image: on
// a compacted topic the changes between the row Redis holds and the one being
// applied may be gone.
//
//	KEYS[i]       row i's key
//	ARGV[2i-1]    row i's layout: "h" hash or "j" JSON
//	ARGV[2i]      row i's memberships after the change, as netstrings ("" for a delete)
//
// It removes each row from the sets it leaves and adds it to all of its new ones
// (SADD of a member already there changes nothing). It returns an array with one
// element per row: 1, or an error reply starting with "KANAL " when the stored
// "__sets" is corrupt (nothing done for that row) or a set key holds another type
// (the row's other set commands are done). A row key holding another type is
// treated as a row without sets: the transaction replaces it.
const setsScript = `
local function decode(s)
  local out = {}
  if not s or s == '' then return out end
  local i = 1
  while i <= #s do
    local c = string.find(s, ':', i, true)
    if not c then return nil end
    local n = tonumber(string.sub(s, i, c - 1))
    if not n then return nil end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end
local function fromjson(v)
  if type(v) ~= 'string' or not string.find(v, '"__sets":', 1, true) then return nil end
  local ok, obj = pcall(cjson.decode, v)
  if ok and type(obj) == 'table' and type(obj['__sets']) == 'string' then return obj['__sets'] end
  return nil
end

local out = {}
for r = 1, #KEYS do
  local key, layout, sets = KEYS[r], ARGV[2 * r - 1], ARGV[2 * r]
  local old
  if layout == 'h' then
    old = redis.pcall('HGET', key, '__sets')
    if type(old) == 'table' then old = fromjson(redis.pcall('GET', key)) end
  else
    old = redis.pcall('GET', key)
    if type(old) == 'table' then
      old = redis.pcall('HGET', key, '__sets')
      if type(old) == 'table' then old = nil end
    else
      old = fromjson(old)
    end
  end
  if old == sets then
    out[r] = 1
  else
    local o, n = decode(old), decode(sets)
    if not o or not n then
      out[r] = redis.error_reply('KANAL corrupt __sets')
    else
      local keep, failed = {}, nil
      for i = 1, #n, 2 do
        keep[n[i] .. '\0' .. n[i + 1]] = true
        local res = redis.pcall('SADD', n[i], n[i + 1])
        if type(res) == 'table' and res.err then failed = res.err .. ' (set ' .. n[i] .. ')' end
      end
      for i = 1, #o, 2 do
        if not keep[o[i] .. '\0' .. o[i + 1]] then
          local res = redis.pcall('SREM', o[i], o[i + 1])
          if type(res) == 'table' and res.err then failed = res.err .. ' (set ' .. o[i] .. ')' end
        end
      end
      out[r] = 1
      if failed then out[r] = redis.error_reply('KANAL ' .. failed) end
    end
  end
end
return out
`
