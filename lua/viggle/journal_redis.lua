--- The batch journal of a fleet: the interface of viggle.journal (items,
--- add, set, close), kept in Redis so that several workers, on one machine
--- or many, share one batch; plus the leases that share the work out
--- (claim, renew, release) and the shared view (view).
---
--- Keys, for a batch named NAME (the {} keep them in one cluster slot):
---   viggle:batch:{NAME}:items    hash: item key -> the item's row (JSON: seq,
---                                fields, state, job_id, code, message, credits,
---                                exact, posts, was_uncertain, updated)
---   viggle:batch:{NAME}:leases   hash: item key -> {worker, since, until} (ms,
---                                Redis's clock: TIME)
---   viggle:batch:{NAME}:workers  hash: worker -> {started, seen} (ms)
--- Every change is one server-side script, so it is atomic: a transition of
--- an item is made only under a lease naming the worker that makes it (a
--- worker whose lease another worker took is refused: LEASE_LOST), and the
--- claim that hands an item over sees its state and its lease at one instant.
--- A lease that ran out stays its holder's until another worker claims the
--- item (its holder's next write renews it): a Redis that was away for a
--- while loses nobody their work. See README.md, "Fleets".
local cjson = require("cjson.safe")
local errors = require("viggle.errors")
local redis = require("viggle.redis")

local type, tostring, tonumber, ipairs, pairs, setmetatable, format = type, tostring, tonumber, ipairs, pairs,
  setmetatable, string.format
local E = errors.new

local _M = {}

-- Redis's clock, in ms: every worker's leases are measured on the same one.
local NOW = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
]]

-- A worker was seen now: seen(workers key, worker).
local SEEN = [[
local function seen(key, me)
  local w = redis.call('HGET', key, me)
  w = w and cjson.decode(w) or {started = now}
  w.seen = now
  redis.call('HSET', key, me, cjson.encode(w))
end
]]

-- KEYS: items. ARGV: [{key, seq, fields}...] as JSON. New items only, as planned.
local ADD = NOW .. [[
local n = 0
for _, it in ipairs(cjson.decode(ARGV[1])) do
  local row = cjson.encode({seq = it.seq, fields = it.fields, state = 'planned', posts = 0,
                            was_uncertain = false, updated = now / 1000})
  n = n + redis.call('HSETNX', KEYS[1], it.key, row)
end
return n
]]

-- KEYS: items, leases. ARGV: worker, key. Refuses (LEASE_LOST) unless the
-- item's lease names this worker; `l` is the lease.
local LEASED = NOW .. [[
local l = redis.call('HGET', KEYS[2], ARGV[2])
if not l then return redis.error_reply('LEASE_LOST item ' .. ARGV[2] .. ' is held by no worker') end
l = cjson.decode(l)
if l.worker ~= ARGV[1] then
  return redis.error_reply('LEASE_LOST item ' .. ARGV[2] .. ' is now held by ' .. l.worker)
end
]]

-- KEYS: items, leases. ARGV: worker, key, fields (JSON; false clears), lease ms.
local SET = LEASED .. [[
local row = redis.call('HGET', KEYS[1], ARGV[2])
if not row then return redis.error_reply('NO_ITEM ' .. ARGV[2]) end
row = cjson.decode(row)
for k, v in pairs(cjson.decode(ARGV[3])) do
  if v == false and k ~= 'exact' and k ~= 'was_uncertain' then row[k] = nil else row[k] = v end
end
if row.state == 'planned' then row.reserved = nil end -- not sent after all: its credits are free again
row.updated = now / 1000
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(row))
l['until'] = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(l))
return 1
]]

-- KEYS: items, leases. ARGV: worker, key, credits, limit, the states whose
-- credits count (JSON). The credits of every item sent or reserved, plus
-- this one's: reserved (counted from now on) when within limit.
local RESERVE = LEASED .. [[
local posted, total = {}, tonumber(ARGV[3])
for _, s in ipairs(cjson.decode(ARGV[5])) do posted[s] = true end
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do
  local r = cjson.decode(flat[i + 1])
  -- (this item counts twice when it was sent before: an uncertain POST may have been paid)
  if posted[r.state] or (r.reserved and flat[i] ~= ARGV[2]) then total = total + (tonumber(r.credits) or 0) end
end
if total <= tonumber(ARGV[4]) then
  local row = cjson.decode(redis.call('HGET', KEYS[1], ARGV[2]))
  row.reserved = true
  redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(row))
end
return tostring(total)
]]

-- KEYS: items, leases, workers. ARGV: worker, n, lease ms, keys this worker
-- will not take (JSON), final states (JSON). Takes up to n items that are not
-- final and whose lease is free, ran out, or is already this worker's, in
-- manifest order. Returns {claimed keys, items held by other live leases,
-- now, until}.
local CLAIM = NOW .. SEEN .. [[
local me, n, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local skip, final = {}, {}
for _, k in ipairs(cjson.decode(ARGV[4])) do skip[k] = true end
for _, s in ipairs(cjson.decode(ARGV[5])) do final[s] = true end
local flat = redis.call('HGETALL', KEYS[1])
local list = {}
for i = 1, #flat, 2 do
  local row = cjson.decode(flat[i + 1])
  if not final[row.state] then list[#list + 1] = {key = flat[i], seq = row.seq} end
end
table.sort(list, function(a, b) return a.seq < b.seq end)
local claimed, others = {}, 0
for _, it in ipairs(list) do
  local l = redis.call('HGET', KEYS[2], it.key)
  l = l and cjson.decode(l)
  local live_other = l and l.worker ~= me and l['until'] > now
  if live_other then
    others = others + 1
  elseif #claimed < n and not skip[it.key] then
    local since = (l and l.worker == me) and l.since or now
    redis.call('HSET', KEYS[2], it.key, cjson.encode({worker = me, since = since, ['until'] = now + lease}))
    claimed[#claimed + 1] = it.key
  end
end
seen(KEYS[3], me)
return {claimed, others, now, now + lease}
]]

-- KEYS: leases, workers. ARGV: worker, lease ms, keys (JSON). Returns {lost keys, now, until}.
local RENEW = NOW .. SEEN .. [[
local me, lease = ARGV[1], tonumber(ARGV[2])
local lost = {}
for _, k in ipairs(cjson.decode(ARGV[3])) do
  local l = redis.call('HGET', KEYS[1], k)
  l = l and cjson.decode(l)
  if l and l.worker == me then
    l['until'] = now + lease
    redis.call('HSET', KEYS[1], k, cjson.encode(l))
  else
    lost[#lost + 1] = k
  end
end
seen(KEYS[2], me)
return {lost, now, now + lease}
]]

-- KEYS: leases. ARGV: worker, keys (JSON). Drops this worker's leases on them; returns now.
local RELEASE = NOW .. [[
for _, k in ipairs(cjson.decode(ARGV[2])) do
  local l = redis.call('HGET', KEYS[1], k)
  if l and cjson.decode(l).worker == ARGV[1] then redis.call('HDEL', KEYS[1], k) end
end
return now
]]

-- KEYS: items, leases, workers. The whole batch at one instant.
local VIEW = NOW .. [[
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), now}
]]

local NAME_OF = "return redis.sha1hex(ARGV[1])"

-- The states in which an item's credits count against max_credits (as viggle.batch's).
local POSTED = { "submitting", "submitted", "complete", "downloaded", "failed", "cancelled", "uncertain" }

local Journal = {}
Journal.__index = Journal

local function json(v) return (cjson.encode(v)) end

local function failed(err, what)
  if err.reply and err.reply:match("^LEASE_LOST") then
    return nil, E("io", format("%s: %s", what, err.reply:gsub("^LEASE_LOST ", "")), { code = "LEASE_LOST" })
  end
  return nil, err
end

--- Opens the journal of batch `name` in the Redis at `url`. opts: worker
--- (this worker's name: needed to claim and to write), lease (seconds,
--- default 15), timeout, wait, on_wait (see viggle.redis.connect).
--- Fails at once when Redis cannot be reached or refuses.
---@param url string
---@param name string
---@param opts table|nil
---@return table|nil journal
---@return viggle.Error|nil err
function _M.open(url, name, opts)
  opts = opts or {}
  local conn, err = redis.connect(url, { timeout = opts.timeout, wait = opts.wait, on_wait = opts.on_wait })
  if not conn then return nil, err end
  local p = "viggle:batch:{" .. name .. "}:"
  return setmetatable({ conn = conn, name = name, worker = opts.worker, lease_ms = math.floor((opts.lease or 15) * 1000),
                        path = format("%s (batch %s)", redis.redact(url), name),
                        k_items = p .. "items", k_leases = p .. "leases", k_workers = p .. "workers" }, Journal)
end

--- A batch name from a text (the manifest's items): 16 hex digits of its SHA-1.
---@param url string
---@param text string
---@return string|nil name
---@return viggle.Error|nil err
function _M.name_of(url, text)
  local conn, err = redis.connect(url, { wait = 0 })
  if not conn then return nil, err end
  local sha
  sha, err = conn:eval(NAME_OF, {}, { text })
  conn:close()
  if not sha then return nil, err end
  return "m-" .. sha:sub(1, 16)
end

--- Closes the connection.
---@return nil
function Journal:close() self.conn:close() end

local function rows_of(flat)
  local rows = {}
  for i = 1, #flat, 2 do
    local r = cjson.decode(flat[i + 1]) or {}
    r.key = flat[i]
    r.posts = tonumber(r.posts) or 0
    r.exact = r.exact == true
    r.was_uncertain = r.was_uncertain == true
    rows[#rows + 1] = r
  end
  table.sort(rows, function(a, b) return (a.seq or 0) < (b.seq or 0) end)
  return rows
end

--- Every item, in manifest order (as viggle.journal's items()).
---@return table[]|nil rows
---@return viggle.Error|nil err
function Journal:items()
  local r, err = self.conn:call("HGETALL", self.k_items)
  if not r then return nil, err end
  return rows_of(r)
end

--- Adds items {key, seq, fields} as planned; items already there are left as they are.
---@param list {key: string, seq: integer, fields: string}[]
---@return boolean|nil ok
---@return viggle.Error|nil err
function Journal:add(list)
  if #list == 0 then return true end
  local plain = {}
  for i, it in ipairs(list) do plain[i] = { key = it.key, seq = it.seq, fields = it.fields } end
  local r, err = self.conn:eval(ADD, { self.k_items }, { json(plain) })
  if not r then return nil, err end
  return true
end

--- One item's row, or false when the journal has no such item.
---@param key string
---@return table|false|nil row
---@return viggle.Error|nil err
function Journal:get(key)
  local r, err = self.conn:call("HGET", self.k_items, key)
  if r == nil then return nil, err end
  if not r then return false end
  return rows_of({ key, r })[1]
end

--- How many items the journal holds.
---@return integer|nil n
---@return viggle.Error|nil err
function Journal:count()
  return self.conn:call("HLEN", self.k_items)
end

--- Sets fields of one item (as viggle.journal's set), under this worker's
--- lease: refused (io, code LEASE_LOST) when another worker holds it.
---@param key string
---@param t table the fields to set
---@return boolean|nil ok
---@return viggle.Error|nil err
function Journal:set(key, t)
  if not self.worker then error("journal_redis: set needs a worker (opened for reading)", 2) end
  local fields = {}
  for k, v in pairs(t) do fields[k] = v end
  local r, err = self.conn:eval(SET, { self.k_items, self.k_leases }, { self.worker, key, json(fields), self.lease_ms })
  if not r then return failed(err, "item " .. key) end
  return true
end

--- The credits of every item of the batch sent or reserved, by any worker,
--- plus `credits` for `key`; when that is within `limit`, `key`'s credits are
--- reserved (counted by every worker from now on) in the same step. Raises
--- when Redis cannot answer (as a failed write of the journal does).
---@param key string
---@param credits number
---@param limit number
---@return number total
function Journal:reserve(key, credits, limit)
  local r, err = self.conn:eval(RESERVE, { self.k_items, self.k_leases },
    { self.worker, key, credits, limit, json(POSTED) })
  if not r then
    local _, ferr = failed(err, "item " .. key)
    error(ferr, 0)
  end
  return tonumber(r)
end

--- Claims up to `n` items (not final, not held by another live lease, not in
--- `skip`, a set of keys). Returns the keys, how many items other workers
--- hold, and the lease's start and end (ms), or nil, err.
---@param n integer
---@param skip table<string, boolean>|nil
---@param final_states string[]
---@return string[]|nil keys
---@return integer|viggle.Error others, or the error
---@return number|nil since
---@return number|nil until_ms
function Journal:claim(n, skip, final_states)
  local list = {}
  for k in pairs(skip or {}) do list[#list + 1] = k end
  local r, err = self.conn:eval(CLAIM, { self.k_items, self.k_leases, self.k_workers },
    { self.worker, n, self.lease_ms, #list > 0 and json(list) or "[]", json(final_states) })
  if not r then return nil, err end
  return r[1], r[2], r[3], r[4]
end

--- Renews this worker's leases on `keys`; returns the keys it lost (another
--- worker took them), and the leases' new end (ms).
---@param keys string[]
---@return string[]|nil lost
---@return number|viggle.Error until_ms, or the error
function Journal:renew(keys)
  local r, err = self.conn:eval(RENEW, { self.k_leases, self.k_workers },
    { self.worker, self.lease_ms, #keys > 0 and json(keys) or "[]" })
  if not r then return nil, err end
  return r[1], r[3]
end

--- Lets go of `keys`; returns the time (ms).
---@param keys string[]
---@return number|boolean|nil at
---@return viggle.Error|nil err
function Journal:release(keys)
  if #keys == 0 then return true end
  return self.conn:eval(RELEASE, { self.k_leases }, { self.worker, json(keys) })
end

--- The shared view: rows (each with `holder` {worker, since, until} when
--- leased), workers {name -> {started, seen}}, and Redis's time (ms).
---@return {rows: table[], workers: table, now: number}|nil view
---@return viggle.Error|nil err
function Journal:view()
  local r, err = self.conn:eval(VIEW, { self.k_items, self.k_leases, self.k_workers }, {})
  if not r then return nil, err end
  local rows, leases, workers = rows_of(r[1]), {}, {}
  for i = 1, #r[2], 2 do leases[r[2][i]] = cjson.decode(r[2][i + 1]) end
  for i = 1, #r[3], 2 do workers[r[3][i]] = cjson.decode(r[3][i + 1]) end
  for _, row in ipairs(rows) do
    local l = leases[row.key]
    if type(l) == "table" then
      row.holder = { worker = tostring(l.worker), since = l.since, ["until"] = l["until"],
                     live = (tonumber(l["until"]) or 0) > r[4] }
    end
  end
  return { rows = rows, workers = workers, now = r[4] }
end

return _M
