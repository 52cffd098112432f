--- A batch shared by a fleet of workers through Redis (viggle.batch with
--- opts.redis). Each worker claims a few items at a time under a lease,
--- runs them exactly as a local batch runs its items (viggle.batch's own
--- run, on a journal that is the shared one seen through those items),
--- renews the leases while it works, lets go of them, and claims again. A
--- worker that dies loses its leases when they run out; another claims its
--- items and resumes them from their recorded state. A worker leaves when
--- nothing is left to claim and no other live worker holds an item.
--- See README.md, "Fleets".
local errors = require("viggle.errors")
local loop = require("viggle.loop")
local cjson = require("cjson.safe")
local journal_redis = require("viggle.journal_redis")

local ipairs, pairs, tostring, format, concat, floor = ipairs, pairs, tostring, string.format, table.concat, math.floor
local E = errors.new

local _M = {}

local FINAL = { "downloaded", "failed", "cancelled" }

-- HOST:PID~RAND, the default name of a worker (RAND: 4 bytes of
-- /dev/urandom, so two machines with one hostname, or two containers that
-- both run as pid 1, never share a name, and so never each other's leases).
local function worker_name()
  local function first_line(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*l")
    f:close()
    return s
  end
  local pid = (first_line("/proc/self/stat") or ""):match("^(%d+)") or "0"
  local host = first_line("/proc/sys/kernel/hostname") or os.getenv("HOSTNAME") or "host"
  local r = io.open("/dev/urandom", "rb")
  local bytes = r and r:read(4) or tostring(os.time()) .. tostring({})
  if r then r:close() end
  return format("%s:%s~%s", host, pid, (bytes:gsub(".", function(c) return format("%02x", c:byte()) end)):sub(1, 8))
end

--- The batch's name in Redis: opts.name, or one derived from the items'
--- content (the same manifest gives the same name on every machine).
---@param items table[] the items of viggle.batch.read_manifest
---@param opts {redis: string, name: string?}
---@return string|nil name
---@return viggle.Error|nil err
function _M.name(items, opts)
  if opts.name then return opts.name end
  local texts = {}
  for i, it in ipairs(items) do texts[i] = it.fields end
  return journal_redis.name_of(opts.redis, concat(texts, "\n"))
end

-- Opens the shared journal for `items` (opts: redis, name, worker, lease).
local function open(items, opts, on_wait)
  local name, err = _M.name(items, opts)
  if not name then return nil, err end
  return journal_redis.open(opts.redis, name, { worker = opts.worker, lease = opts.lease, wait = opts.redis_wait,
                                                on_wait = on_wait })
end

-- The audit log of claims (opts.claims_log): one line per claim, renewal and
-- release, with Redis's time in ms: "claim KEY WORKER SINCE UNTIL",
-- "renew KEY WORKER UNTIL", "release KEY WORKER AT". Flushed line by line.
local function claims_log(path, worker)
  if not path then return function() end end
  local f = assert(io.open(path, "ab"))
  return function(what, keys, a, b)
    for _, k in ipairs(keys) do
      f:write(format("%s %s %s %.0f%s\n", what, k, worker, a, b and format(" %.0f", b) or ""))
    end
    f:flush()
  end
end

-- The shared journal as viggle.batch's run sees it: only the claimed items.
local function scoped(j, keys)
  local mine = {}
  for _, k in ipairs(keys) do mine[k] = true end
  return {
    path = j.path,
    items = function()
      local rows, err = j:items()
      if not rows then return nil, err end
      local out = {}
      for _, r in ipairs(rows) do if mine[r.key] then out[#out + 1] = r end end
      return out
    end,
    add = function(_, list) return j:add(list) end,
    set = function(_, key, t) return j:set(key, t) end,
    reserve = function(_, key, credits, limit) return j:reserve(key, credits, limit) end,
  }
end

-- Renews the leases on `keys` every lease/3 seconds while the scheduler
-- runs (it does during submissions, waits and downloads). Returns the
-- task; `lost` collects keys another worker took.
local function renewer(j, keys, lease, log, lost, emit)
  return loop.spawn(function()
    while true do
      loop.sleep(lease / 3)
      local gone, untl = j:renew(keys)
      if gone then
        log("renew", keys, untl)
        for _, k in ipairs(gone) do
          if not lost[k] then
            lost[k] = true
            emit({ type = "notice", message = "lost the lease on item " .. k .. " (another worker took it)" })
          end
        end
      else
        emit({ type = "notice", message = "cannot renew leases: " .. tostring(untl) })
      end
    end
  end)
end

local work_loop

--- Runs a worker of the batch `items` (read by viggle.batch) in the Redis of
--- opts.redis. Returns the report of viggle.batch.run over the whole batch
--- (ok when every item's video was downloaded, by whichever worker), or
--- nil, err.
---@param batch table the viggle.batch module (its _sync and _run)
---@param items table[] the items of viggle.batch.read_manifest
---@param client viggle.Client
---@param opts table the options of viggle.batch.run
---@param emit fun(ev: table) reports events (on_event)
---@return table|nil report
---@return viggle.Error|nil err
function _M.run(batch, items, client, opts, emit)
  local lease = opts.lease or 15
  if type(lease) ~= "number" or lease <= 0 then
    return nil, E("invalid_argument", "lease (--lease) must be a positive number of seconds")
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.worker = opts.worker or worker_name()
  opts = o
  local j, err = open(items, opts, function(msg) emit({ type = "notice", message = msg }) end)
  if not j then return nil, err end
  local report
  local ok, perr = pcall(function() report, err = work_loop(batch, j, items, client, opts, emit, lease) end)
  j:close()
  if not ok then error(perr, 0) end
  return report, err
end

-- Claims, runs, releases, until nothing is left to claim.
function work_loop(batch, j, items, client, opts, emit, lease)
  -- The manifest must still say what the shared journal recorded.
  local rows, err = batch._sync(j, items)
  if not rows then return nil, err end

  local log = claims_log(opts.claims_log, opts.worker)
  local tried, n = {}, opts.concurrency or 4
  local item_of = {}
  for _, it in ipairs(items) do item_of[it.key] = it end
  while true do
    local keys, others, since, untl = j:claim(n, tried, FINAL)
    if not keys then return nil, others end
    if #keys == 0 then
      if others == 0 then break end
      -- others hold the rest: wait for them to finish, or for their leases to run out
      loop.sleep(math.min(0.5, lease / 4))
    else
      log("claim", keys, since, untl)
      local sub, lost = {}, {}
      for _, k in ipairs(keys) do
        sub[#sub + 1] = item_of[k]
        tried[k] = true
      end
      local r = renewer(j, keys, lease, log, lost, emit)
      local pok, report, rerr = pcall(batch._run, scoped(j, keys), sub, client, opts, emit)
      r:cancel()
      r:join()
      local at = j:release(keys)
      if at then log("release", keys, at) end
      if not pok then return nil, report end
      if not report and rerr then return nil, rerr end
    end
  end
  return _M.report(j, items)
end

--- The report of viggle.batch.run over the whole shared batch.
---@param j table a journal of viggle.journal_redis
---@param items table[] the items of viggle.batch.read_manifest
---@return table|nil report
---@return viggle.Error|nil err
function _M.report(j, items)
  local view, err = j:view()
  if not view then return nil, err end
  local by = {}
  for _, r in ipairs(view.rows) do by[r.key] = r end
  local counts, uncertain, out, all = {}, {}, {}, true
  for _, s in ipairs(require("viggle.journal").STATES) do counts[s] = 0 end
  for _, it in ipairs(items) do
    local r = by[it.key] or { state = "planned", posts = 0 }
    counts[r.state] = (counts[r.state] or 0) + 1
    if r.state ~= "downloaded" then all = false end
    if r.state == "uncertain" or r.was_uncertain then uncertain[#uncertain + 1] = it.key end
    out[#out + 1] = { key = it.key, state = r.state, job_id = r.job_id, code = r.code, message = r.message,
                      output = it.output, mask_output = it.mask_output, credits = r.credits, exact = r.exact,
                      posts = r.posts, was_uncertain = r.was_uncertain,
                      holder = r.holder and r.holder.live and r.holder.worker or nil }
  end
  return { ok = all, items = out, counts = counts, uncertain = uncertain, cost = { credits = 0, unknown = 0, items = 0 },
           journal = j.path, worker = j.worker }
end

--- The shared view of a batch: as viggle.batch.status, each item with the
--- worker that holds it (`holder`, `lease_left` in seconds), and `workers`.
---@param items table[] the items of viggle.batch.read_manifest
---@param opts {redis: string, name: string?}
---@return table|nil view
---@return viggle.Error|nil err
function _M.status(items, opts)
  local j, err = open(items, { redis = opts.redis, name = opts.name, redis_wait = 0 })
  if not j then return nil, err end
  local view
  view, err = j:view()
  j:close()
  if not view then return nil, err end
  if #view.rows == 0 then
    return nil, E("invalid_argument", "no batch " .. j.path .. " in Redis (the batch has not run yet, or --name differs)")
  end
  local counts = {}
  for _, s in ipairs(require("viggle.journal").STATES) do counts[s] = 0 end
  local by, list = {}, {}
  for _, r in ipairs(view.rows) do by[r.key] = r end
  for _, it in ipairs(items) do
    local r = by[it.key]
    if r then
      counts[r.state] = (counts[r.state] or 0) + 1
      local h = r.holder
      list[#list + 1] = { key = r.key, state = r.state, job_id = r.job_id, code = r.code, message = r.message,
                          output = it.output, credits = r.credits, exact = r.exact, posts = r.posts,
                          was_uncertain = r.was_uncertain, holder = h and h.live and h.worker or nil,
                          lease_left = h and h.live and floor((h["until"] - view.now) / 100) / 10 or nil }
    end
  end
  local workers = {}
  for name, w in pairs(view.workers) do
    workers[#workers + 1] = { worker = name, seen_ago = floor((view.now - (w.seen or 0)) / 100) / 10 }
  end
  table.sort(workers, function(a, b) return a.worker < b.worker end)
  return { items = list, counts = counts, journal = j.path, workers = workers }
end

-- ---- a queue: items added one by one, workers that take them --------------

--- Adds one item (a table, as one line of a manifest: key, render fields,
--- output; absolute paths) to the shared batch `name` in the Redis at `url`,
--- as `planned`. A handler can enqueue while workers (fleet.work) run.
--- Returns true, or nil, err (a bad item; its key already queued with other
--- fields; Redis unreachable). Enqueuing the same item twice does nothing.
---@param url string
---@param name string
---@param item table
---@return boolean|nil ok
---@return viggle.Error|nil err
function _M.enqueue(url, name, item)
  local items, err = require("viggle.batch").read_manifest({ item })
  if not items then return nil, err end
  local it = items[1]
  local j
  j, err = journal_redis.open(url, name, { wait = 0 })
  if not j then return nil, err end
  local ok, row, n
  ok, err = pcall(function()
    row, err = j:get(it.key)
    if row == nil then return end
    if row then
      if row.fields ~= it.fields then
        row, err = nil, E("invalid_argument", format("item %q is already queued in %s with other fields", it.key, j.path))
      end
      return
    end
    n, err = j:count()
    if not n then return end
    row, err = j:add({ { key = it.key, seq = n + 1, fields = it.fields } })
  end)
  j:close()
  if not ok then error(err, 0) end
  if not row then return nil, err end
  return true
end

--- A worker over the items queued in the shared batch `name`: runs them as
--- viggle.batch.run with opts.redis = url and opts.name = name (opts as
--- there: client, concurrency, lease, interval, on_event...), and returns its
--- report once nothing is left to claim; {ok = true, items = {}} when
--- nothing is queued. In nginx, call it from a timer (README.md, "Fleets").
---@param url string
---@param name string
---@param opts table|nil
---@return table|nil report
---@return viggle.Error|nil err
function _M.work(url, name, opts)
  local j, err = journal_redis.open(url, name, { wait = 0 })
  if not j then return nil, err end
  local rows
  rows, err = j:items()
  j:close()
  if not rows then return nil, err end
  if #rows == 0 then return { ok = true, items = {}, counts = {}, uncertain = {} } end
  local list = {}
  for i, r in ipairs(rows) do list[i] = cjson.decode(r.fields) end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.redis, o.name = url, name
  return require("viggle.batch").run(list, o)
end

return _M
