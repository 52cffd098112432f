--- Durable batches: a manifest of renders (JSON Lines), a journal beside it
--- (viggle.journal, SQLite), and a run that submits, waits (one await_all),
--- downloads, and can be killed at any instant and run again: submitted jobs
--- are awaited, never sent again; complete ones are downloaded (a .part is
--- resumed); downloaded ones are left alone. A POST that may have reached the
--- server without an answer is `uncertain`: reported, and sent again only
--- with resubmit_uncertain. See README.md, "Batches".
local cjson = require("cjson.safe")
local errors = require("viggle.errors")
local loop = require("viggle.loop")
local journal_mod = require("viggle.journal")
local preflight = require("viggle.preflight")

local type, tostring, pairs, ipairs, error, pcall = type, tostring, pairs, ipairs, error, pcall
local format, concat, sort = string.format, table.concat, table.sort
local E = errors.new

local _M = {}

local RENDER_FIELDS = {
  ref_image = true, ref_image_url = true, driving_video = true, driving_video_url = true,
  character_id = true, scene_id = true, character_mapping = true, model = true,
  background_mode = true, bg_color = true, fast = true,
}
local PATH_FIELDS = { ref_image = true, driving_video = true, output = true, mask_output = true }

-- States in which the item's job exists (or may exist) on the server.
local POSTED = { submitting = true, submitted = true, complete = true, downloaded = true,
                 failed = true, cancelled = true, uncertain = true }
-- States in which the item has ended for good.
local FINAL = { downloaded = true, failed = true, cancelled = true }

-- ---- the manifest ------------------------------------------------------------

-- JSON with the keys of every object sorted: the same item, the same text.
local function canonical(v)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = canonical(v[i]) end
      return "[" .. concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = cjson.encode(k) .. ":" .. canonical(v[k]) end
    return "{" .. concat(parts, ",") .. "}"
  end
  return (cjson.encode(v))
end
_M.canonical = canonical

local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end

-- A path of the manifest, relative to the manifest's own directory.
local function resolve(base, p)
  if type(p) ~= "string" or p:sub(1, 1) == "/" or base == "." then return p end
  return base .. "/" .. p
end

--- Reads a manifest: a JSON Lines file (or a list of tables) of renders,
--- each with a unique "key", the render fields of client:render and
--- "output" (the video's path; "mask_output" optional). Relative paths are
--- relative to the manifest's directory. Returns the items {key, seq,
--- params, output, mask_output, fields} or nil, err (invalid_argument
--- naming the line and the key).
---@param manifest string|table a path, or a list of item tables
---@return table[]|nil items
---@return viggle.Error|nil err
function _M.read_manifest(manifest)
  local rows, base = {}, "."
  if type(manifest) == "string" then
    local f, ferr = io.open(manifest, "rb")
    if not f then return nil, E("invalid_argument", "cannot read the manifest: " .. tostring(ferr)) end
    base = dir_of(manifest)
    local n = 0
    for line in f:lines() do
      n = n + 1
      if line:find("%S") then
        local v, derr = cjson.decode(line)
        if type(v) ~= "table" or (#v > 0) then
          f:close()
          return nil, E("invalid_argument", format("%s:%d: not a JSON object (%s)", manifest, n,
            tostring(derr or "one render a line")))
        end
        rows[#rows + 1] = { line = n, item = v }
      end
    end
    f:close()
  elseif type(manifest) == "table" then
    for i, v in ipairs(manifest) do
      if type(v) ~= "table" then error("bad argument #1 to 'batch' (a list of item tables expected)", 3) end
      rows[#rows + 1] = { line = i, item = v }
    end
  else
    error("bad argument #1 to 'batch' (manifest path or list of items expected)", 3)
  end
  local where = type(manifest) == "string" and manifest or "manifest"
  local items, seen, outputs = {}, {}, {}
  for _, r in ipairs(rows) do
    local v = r.item
    local function bad(msg)
      return nil, E("invalid_argument", format("%s:%d: %s", where, r.line, msg))
    end
    local key = v.key
    if type(key) ~= "string" or key == "" then return bad("every item needs a \"key\" (a non-empty string)") end
    if seen[key] then return bad(format("key %q is used twice (also on line %d)", key, seen[key])) end
    seen[key] = r.line
    if type(v.output) ~= "string" or v.output == "" then return bad(format("item %q has no \"output\" path", key)) end
    local params = {}
    for k, val in pairs(v) do
      if val == cjson.null then val = nil end
      if k ~= "key" and k ~= "output" and k ~= "mask_output" then
        if not RENDER_FIELDS[k] then return bad(format("item %q: unknown field %q", key, tostring(k))) end
        params[k] = PATH_FIELDS[k] and resolve(base, val) or val
      end
    end
    local item = { key = key, seq = #items + 1, params = params, output = resolve(base, v.output),
                   mask_output = v.mask_output ~= cjson.null and resolve(base, v.mask_output) or nil,
                   fields = canonical(v) }
    for _, o in ipairs({ item.output, item.mask_output }) do
      if outputs[o] then return bad(format("item %q writes %s, as item %q does", key, o, outputs[o])) end
      outputs[o] = key
    end
    items[#items + 1] = item
  end
  if #items == 0 then return nil, E("invalid_argument", where .. ": no items") end
  return items
end

-- The fields that differ between two canonical JSON texts of an item.
local function differing(a, b)
  local x, y = cjson.decode(a) or {}, cjson.decode(b) or {}
  local names, seen = {}, {}
  for _, t in ipairs({ x, y }) do
    for k in pairs(t) do
      if not seen[k] and canonical(x[k]) ~= canonical(y[k]) then names[#names + 1] = k end
      seen[k] = true
    end
  end
  sort(names)
  return concat(names, ", ")
end

-- ---- the run -----------------------------------------------------------------

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Runs (or resumes) a batch. `manifest`: a JSON Lines path, or a list of
--- item tables (then opts.journal is needed). Options: journal (default
--- MANIFEST.journal), client (default: from the environment), concurrency
--- (renders submitted at once, default 4; downloads too), max_credits,
--- allow_unknown_cost, resubmit_uncertain, interval, timeout (of the wait),
--- on_event(ev) (ev.type "item" with key, state, job_id, code, message,
--- job; "cost" with credits, unknown, balance; "notice" with message).
--- With redis (a redis:// URL) the journal is shared by a fleet of workers
--- (viggle.fleet): name, lease, worker, redis_wait, claims_log (README.md, "Fleets").
--- Returns the report {ok, items, counts, uncertain, stopped, cost}
--- (ok: every item's video is on disk), or nil, err when the batch was
--- refused before anything was sent (a bad manifest, a changed item, a
--- failed pre-flight).
---@param manifest string|table
---@param opts table|nil
---@return table|nil report
---@return viggle.Error|nil err
function _M.run(manifest, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #2 to 'batch' (table expected)", 2) end
  local items, err = _M.read_manifest(manifest)
  if not items then return nil, err end
  local jpath = opts.journal or (type(manifest) == "string" and manifest .. ".journal")
  if not jpath and not opts.redis then
    error("bad argument #2 to 'batch' (opts.journal needed for a list of items)", 2)
  end
  local client = opts.client
  if not client then
    client, err = require("viggle").default()
    if not client then return nil, err end
  end
  local on_event = opts.on_event or function() end
  local function emit(ev)
    local ok, cerr = pcall(on_event, ev)
    if not ok then error(cerr, 0) end
  end

  -- A fleet: the journal is shared in Redis (viggle.fleet, README "Fleets").
  if opts.redis then return require("viggle.fleet").run(_M, items, client, opts, emit) end
  local j
  j, err = journal_mod.open(jpath)
  if not j then return nil, err end
  local locked, lerr = j:lock()
  if not locked then
    j:close()
    return nil, lerr
  end
  local report
  local ok, perr = pcall(function()
    report, err = _M._run(j, items, client, opts, emit)
  end)
  j:close()
  if not ok then error(perr, 0) end
  return report, err
end

-- Checks the manifest against its journal (an item whose fields changed is
-- refused) and adds the items the journal has not seen. Returns the rows,
-- or nil, err. (viggle.fleet calls it too, on the shared journal.)
function _M._sync(j, items)
  local rows, err = j:items()
  if not rows then return nil, err end
  local row_of = {}
  for _, r in ipairs(rows) do row_of[r.key] = r end
  local new = {}
  for _, it in ipairs(items) do
    local r = row_of[it.key]
    if r and r.fields ~= it.fields then
      return nil, E("invalid_argument", format("the manifest changed under its journal %s: item %q differs (%s); "
        .. "restore it, or use another journal", j.path, it.key, differing(r.fields, it.fields)))
    elseif not r then
      new[#new + 1] = { key = it.key, seq = it.seq, fields = it.fields }
    end
  end
  local ok
  ok, err = j:add(new)
  if not ok then return nil, err end
  return j:items()
end

-- A run's state: the journal, the items, the client, the options, the
-- event sink, and what the phases share (the estimates' total, the credits
-- spent, the 402 that stopped submissions).

-- Records a change of an item in the journal (synced) and tells the view.
local function set(b, it, fields)
  for k, v in pairs(fields) do it.row[k] = (v ~= false or k == "exact" or k == "was_uncertain") and v or nil end
  local sok, serr = b.j:set(it.key, fields)
  if not sok then error(serr, 0) end -- a journal that cannot be written: stop before sending anything more
  b.emit({ type = "item", key = it.key, state = it.row.state, job_id = it.row.job_id, code = it.row.code,
           message = it.row.message, output = it.output, was_uncertain = it.row.was_uncertain })
end

-- `fn(item)` for each item of `list`, `n` tasks at once, in list order.
local function run_tasks(list, n, fn)
  local workers = {}
  local i = 1
  for w = 1, math.min(n, #list) do
    workers[w] = loop.spawn(function()
      while i <= #list do
        local it = list[i]
        i = i + 1
        fn(it)
      end
    end)
  end
  for _, w in ipairs(workers) do
    local wok, werr = w:join()
    if not wok then error(werr, 0) end
  end
end

-- A POST that was in flight when the last run died: the server may have it.
local function mark_in_flight(b)
  for _, it in ipairs(b.items) do
    if it.row.state == "submitting" then
      set(b, it, { state = "uncertain", message = "the batch stopped while its POST was in flight: "
        .. "the server may have created the job (not sent again without resubmit_uncertain)" })
    elseif it.row.state == "uncertain" then
      b.emit({ type = "item", key = it.key, state = "uncertain", message = it.row.message, output = it.output })
    end
  end
end

-- What will be sent, each checked before anything is (nil, err naming the
-- item when one fails), with its estimate; the cost against the balance.
local function plan(b)
  local to_send = {}
  for _, it in ipairs(b.items) do
    local st = it.row.state
    if st == "planned" or (st == "uncertain" and b.opts.resubmit_uncertain) then to_send[#to_send + 1] = it end
  end
  for _, it in ipairs(to_send) do
    local err = preflight.check(b.client, it.params, it.output, { mask_output = it.mask_output })
    if not err then
      local _
      _, err = require("viggle.render").check_params(it.params)
    end
    if err then
      err.message = format("item %q: %s", it.key, err.message)
      return nil, err
    end
  end
  local total, unknown = 0, 0
  for _, it in ipairs(to_send) do
    local est, eerr = b.client:estimate(it.params)
    if not est then
      eerr.message = format("item %q: cannot estimate its cost: %s", it.key, eerr.message)
      return nil, eerr
    end
    it.estimate = est
    if est.credits then total = total + est.credits else unknown = unknown + 1 end
    if it.row.credits ~= est.credits or it.row.exact ~= est.exact then
      set(b, it, { credits = est.credits or false, exact = est.exact })
    end
  end
  b.cost = { credits = total, unknown = unknown, items = #to_send }
  if #to_send > 0 then
    local bal, berr = b.client:credits()
    b.cost.balance = bal and tonumber(bal.balance)
    b.cost.balance_error = berr
    b.emit({ type = "cost", credits = total, unknown = unknown, items = #to_send, balance = b.cost.balance,
             error = berr, max_credits = b.opts.max_credits })
  end
  return to_send
end

-- Why an item may not be sent under max_credits, or nil (and then its
-- credits count as spent).
local function over_limit(b, it)
  local est, limit = it.estimate, b.opts.max_credits
  if limit then
    if not est.credits and not b.opts.allow_unknown_cost then
      return "not submitted: its cost is unknown (" .. tostring(est.reason)
        .. ") and max_credits is set (allow_unknown_cost to send it)"
    end
    local would = b.spent + (est.credits or 0)
    -- a fleet's journal counts every worker's items, and reserves this one's credits, atomically
    if b.j.reserve then would = b.j:reserve(it.key, est.credits or 0, limit) end
    if est.credits and would > limit then
      return format("not submitted: %d credits would take the batch to %d, over max_credits %d",
        est.credits, would, limit)
    end
  end
  b.spent = b.spent + (est.credits or 0)
end

-- What a failed POST means for its item. Returns true when it may be sent
-- again at once (it never reached the server whole).
local function post_failed(b, it, rerr, attempt)
  local credits = it.estimate.credits or 0
  if rerr.kind == "credits" then
    set(b, it, { state = "planned", code = rerr.code or "402", message = "not submitted: " .. rerr.message })
    b.spent = b.spent - credits
    if not b.stopped then
      b.stopped = rerr
      b.emit({ type = "notice", message = "the API answered 402 (not enough credits): no more submissions; "
        .. "the jobs already submitted are followed to the end" })
    end
  elseif rerr.uncertain then
    set(b, it, { state = "uncertain", code = rerr.code or (rerr.status and tostring(rerr.status)) or false,
                 message = "the POST may have reached the server without an answer (" .. rerr.message .. ")" })
  elseif rerr.retryable and attempt == 1 then -- never reached the server whole: safe to send again
    set(b, it, { state = "planned", code = rerr.code or false, message = "sending again: " .. rerr.message })
    return true
  elseif rerr.retryable then
    set(b, it, { state = "planned", code = rerr.code or false, message = "not submitted: " .. rerr.message })
    b.spent = b.spent - credits
  else
    set(b, it, { state = "failed", code = rerr.code or (rerr.status and tostring(rerr.status)) or rerr.kind,
                 message = rerr.message })
  end
  return false
end

local function submit_one(b, it)
  if b.stopped then
    return set(b, it, { message = "not submitted: the API answered 402 (not enough credits) to an earlier item" })
  end
  local why = over_limit(b, it)
  if why then return set(b, it, { message = why }) end
  local was = it.row.state == "uncertain" or it.row.was_uncertain
  for attempt = 1, 2 do
    -- Written and synced before the POST: a crash from here on leaves `submitting`.
    set(b, it, { state = "submitting", posts = it.row.posts + 1, code = false, message = false,
                 was_uncertain = was and true or false })
    local job, rerr = b.client:render(it.params)
    if job then
      set(b, it, { state = "submitted", job_id = job.job_id })
      it.job = job
      return
    end
    if not post_failed(b, it, rerr, attempt) then return end
  end
end

-- Submit: `concurrency` tasks take items in manifest order.
local function submit_all(b, to_send)
  b.spent = 0 -- estimates of what was submitted, this run and before
  for _, it in ipairs(b.items) do
    -- (uncertain ones included: they may have been paid for)
    if POSTED[it.row.state] then b.spent = b.spent + (it.row.credits or 0) end
  end
  run_tasks(to_send, b.concurrency, function(it) submit_one(b, it) end)
end

-- Waits for every submitted job at once.
local function await_submitted(b)
  local ids, by_id = {}, {}
  for _, it in ipairs(b.items) do
    if it.row.state == "submitted" and it.row.job_id then
      ids[#ids + 1] = it.row.job_id
      by_id[it.row.job_id] = it
    end
  end
  if #ids == 0 then return end
  local results = b.client:await_all(ids, {
    interval = b.opts.interval, timeout = b.opts.timeout, concurrency = math.max(b.concurrency, 8),
    on_progress = function(job)
      local it = by_id[job.job_id]
      if it then b.emit({ type = "item", key = it.key, state = "submitted", job_id = job.job_id, job = job,
                          output = it.output }) end
    end,
  })
  for i, id in ipairs(ids) do
    local it, r = by_id[id], results[i]
    if not errors.is(r) then
      it.job = r
      set(b, it, { state = "complete", code = false, message = false })
    elseif r.kind == "job_failed" then
      set(b, it, { state = "failed", code = r.code or false, message = r.message })
    elseif r.kind == "job_cancelled" then
      set(b, it, { state = "cancelled", code = r.code or false, message = r.message })
    else -- still running, or the API could not be asked: the next run follows it again
      set(b, it, { code = r.code or false,
                   message = "still " .. (r.job and r.job.status or "submitted") .. ": " .. r.message })
    end
  end
end

-- Downloads what is complete (a .part left by a killed run is resumed).
local function download_complete(b)
  local to_fetch = {}
  for _, it in ipairs(b.items) do
    if it.row.state == "complete" then
      if exists(it.output) and not exists(it.output .. ".part")
         and (not it.mask_output or exists(it.mask_output)) then
        set(b, it, { state = "downloaded", message = false }) -- moved into place just before the last run died
      else
        to_fetch[#to_fetch + 1] = it
      end
    end
  end
  run_tasks(to_fetch, b.concurrency, function(it)
    local target = it.job or it.row.job_id
    local path, info = true, nil
    if not exists(it.output) then path, info = b.client:download(target, it.output) end
    if path and it.mask_output and not exists(it.mask_output) then
      path, info = b.client:download(target, it.mask_output, { mask = true })
    end
    if path then
      set(b, it, { state = "downloaded", code = false, message = false })
    else
      set(b, it, { code = info.code or false, message = "download: " .. info.message })
    end
  end)
end

local function report(b)
  local counts, uncertain, all = {}, {}, true
  for _, s in ipairs(journal_mod.STATES) do counts[s] = 0 end
  local out = {}
  for _, it in ipairs(b.items) do
    local r = it.row
    counts[r.state] = (counts[r.state] or 0) + 1
    if r.state ~= "downloaded" then all = false end
    if r.state == "uncertain" or r.was_uncertain then uncertain[#uncertain + 1] = it.key end
    out[#out + 1] = { key = it.key, state = r.state, job_id = r.job_id, code = r.code, message = r.message,
                      output = it.output, mask_output = it.mask_output, credits = r.credits, exact = r.exact,
                      posts = r.posts, was_uncertain = r.was_uncertain, final = FINAL[r.state] or false }
  end
  return { ok = all, items = out, counts = counts, uncertain = uncertain, stopped = b.stopped, cost = b.cost,
           journal = b.j.path }
end

-- The run itself, once the journal is open (run closes it whatever happens):
-- each phase writes every state it reaches before the side effect it guards.
function _M._run(j, items, client, opts, emit)
  local rows, err = _M._sync(j, items)
  if not rows then return nil, err end
  local row_of = {}
  for _, r in ipairs(rows) do row_of[r.key] = r end
  for _, it in ipairs(items) do it.row = row_of[it.key] end
  local b = { j = j, items = items, client = client, opts = opts, emit = emit, concurrency = opts.concurrency or 4 }
  mark_in_flight(b)
  local to_send
  to_send, err = plan(b)
  if not to_send then return nil, err end
  submit_all(b, to_send)
  await_submitted(b)
  download_complete(b)
  return report(b)
end

--- The journal's view of a batch, without touching the API: {items, counts,
--- journal}. Items are those of the journal, in manifest order.
---@param manifest string the manifest's path (its journal is MANIFEST.journal unless opts.journal)
---@param opts {journal: string?, redis: string?, name: string?}|nil
---@return table|nil view
---@return viggle.Error|nil err
function _M.status(manifest, opts)
  opts = opts or {}
  if opts.redis then -- the shared view, with the worker holding each item
    local items, err = _M.read_manifest(manifest)
    if not items then return nil, err end
    return require("viggle.fleet").status(items, opts)
  end
  local jpath = opts.journal or manifest .. ".journal"
  local j, err = journal_mod.open(jpath, { must_exist = true })
  if not j then return nil, err end
  local rows
  rows, err = j:items()
  j:close()
  if not rows then return nil, err end
  local counts = {}
  for _, s in ipairs(journal_mod.STATES) do counts[s] = 0 end
  local items = {}
  for _, r in ipairs(rows) do
    counts[r.state] = (counts[r.state] or 0) + 1
    local fields = cjson.decode(r.fields) or {}
    items[#items + 1] = { key = r.key, state = r.state, job_id = r.job_id, code = r.code, message = r.message,
                          output = fields.output, credits = r.credits, exact = r.exact, posts = r.posts,
                          was_uncertain = r.was_uncertain }
  end
  return { items = items, counts = counts, journal = jpath }
end

return _M
