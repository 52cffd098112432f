--- Following jobs to their end: one poll, await, await_all and its rate
--- limiter. Policy only: every request goes through viggle.http, every wait
--- through viggle.loop. See docs/architecture.md.
local core = require("viggle.core")
local errors = require("viggle.errors")
local heap = require("viggle.heap")
local http = require("viggle.http")
local loop = require("viggle.loop")

local type, tostring, ipairs, error, pcall = type, tostring, ipairs, error, pcall
local format, min, max, floor, ceil = string.format, math.min, math.max, math.floor, math.ceil
local now = core.now
local E = errors.new
local D = http.DEFAULTS

local _M = {}

-- Transport failures that mean the API was not reached at all (a TLS failure
-- ends a wait at once; an answer cut short was an answer).
local UNREACHABLE = { COULDNT_CONNECT = true, COULDNT_RESOLVE_HOST = true, COULDNT_RESOLVE_PROXY = true }

-- The documented text fields of a job: one of another type is dropped, by
-- the decoder itself (core.decode's `strings`: no second walk of the table).
_M.JOB_TEXT = {}
for _, k in ipairs({ "checkpoint", "mode", "cdn_url", "mask_cdn_url", "download_url", "error",
                     "error_code", "error_message", "created_at", "completed_at" }) do
  _M.JOB_TEXT[k] = true
end

--- A status answer made a job table (hostile field types dropped), or nil, err.
---@param job table the decoded answer, decoded with `strings = JOB_TEXT` (http.api)
---@param id string the job id asked for
---@return table|nil job
---@return viggle.Error|nil err
function _M.check_job(job, id)
  if type(job.status) ~= "string" then
    return nil, E("decode", "the status answer has no status field", { job_id = id })
  end
  if type(job.job_id) ~= "string" then job.job_id = id end
  -- a percentage is a number from 0 to 100 (not NaN, not 1e400, not text): else none
  local pct = job.progress_pct
  if type(pct) ~= "number" or not (pct >= 0 and pct <= 100) then job.progress_pct = nil end
  return job
end
local check_job = _M.check_job

--- What is followed: a render job (JOB, here), or an asset (viggle.assets
--- makes characters and scenes). A target says where to GET it, what its id
--- is called, which status is success and how a failure becomes an error; the
--- polling below is the same for all.
---@class viggle.Target
---@field path string the GET path, before the escaped id
---@field what string what its id is called in messages
---@field key string the error field that names it (job_id, character_id, ...)
---@field noun string what it is, in messages
---@field interval number default seconds between polls
---@field done string the status that ends the wait with success
---@field check fun(answer: table, id: string): table|nil, viggle.Error|nil the answer made a table
---@field strings table|nil the set of fields that must be text (dropped by the decoder when not)
---@field failure fun(t: table, id: string): viggle.Error the error of a "failed" table
---@field cancel fun(c: viggle.Client, id: string): any, any|nil cancel_on_timeout's call; also: "cancelled" ends the wait
_M.JOB = {
  path = "/api/render/", what = "job id", key = "job_id", noun = "job", interval = D.interval,
  done = "complete", check = check_job, strings = _M.JOB_TEXT,
  failure = function(job, id)
    return E("job_failed", job.error_message or job.error or "the job failed",
      { job_id = id, code = job.error_code, job = job })
  end,
  cancel = function(c, id) return c:cancel(id) end,
}
local JOB = _M.JOB

local function changed(a, b)
  return not a or a.status ~= b.status or a.checkpoint ~= b.checkpoint or a.progress_pct ~= b.progress_pct
end

local function describe(job)
  if not job then return "no answer yet" end
  local s = job.status
  if job.checkpoint then s = s .. ", " .. job.checkpoint end
  if job.progress_pct then s = s .. format(", %d%%", floor(job.progress_pct)) end
  return s
end

--- Calls a user callback under pcall: nil, or the "callback" error it raised.
---@param fn function
---@param kind_label string what to call it in the message
---@param job_id string|nil
---@param ... any the callback's arguments
---@return viggle.Error|nil err
function _M.call_back(fn, kind_label, job_id, ...)
  local ok, cerr = pcall(fn, ...)
  if ok then return nil end
  local me = loop.current()
  if me and me.cancelled then error(cerr, 0) end -- it cancelled its own task: the task ends so
  local shown, text = pcall(tostring, cerr)      -- a __tostring that raises is not ours to raise
  if not shown or type(text) ~= "string" then text = "(a " .. type(cerr) .. " that cannot be shown)" end
  return E("callback", format("%s raised: %s", kind_label, text), { job_id = job_id, cause = cerr })
end
local call_back = _M.call_back

-- The state of one job being followed (await, await_all); [1] is the time
-- of its next poll (the heap's key).
local function new_follow(job_id, path, deadline, target)
  return { 0, path = path, id = job_id, target = target, deadline = deadline, failures = 0 }
end

-- The error that ends a follow whose API could not be reached (no answer at
-- all: refused, unknown host, reset; TLS failures end a follow at once) since f.unreachable_since.
local function unreachable(f, cause)
  local t = now() - f.unreachable_since
  return E("network", format("the API could not be reached for %.1f s: %s", t, tostring(cause.message)),
    { job_id = f.id, code = cause.code, cause = cause, job = f.last, retryable = true })
end

-- The timeout error of a follow whose deadline passed (and the DELETE of
-- cancel_on_timeout). A follow whose API has not answered since its
-- failures began ends as unreachable instead.
local function timed_out(c, f, opts)
  if f.unreachable_since and f.last_err then return unreachable(f, f.last_err) end
  local t = f.target
  local state = describe(f.last)
  if f.last_err and (not f.last or f.failures > 0) then state = state .. "; last error: " .. f.last_err.message end
  local terr = E("timeout", format("%s still running after %gs (%s)", t.noun, opts.timeout or D.await_timeout, state),
    { [t.key] = f.id, job = f.last, cause = f.last_err, retryable = false })
  http.scrub(c, terr)
  if opts.cancel_on_timeout and t.cancel then
    local ok, cerr = t.cancel(c, f.id)
    terr.cancelled = ok ~= nil
    terr.cancel_error = cerr
  end
  return terr
end

-- What a job table means for its follow: final, job, err, wait (see poll).
local function judge(c, f, job, opts)
  local id, t = f.id, f.target
  f.failures = 0
  local on_progress = opts.on_progress
  if on_progress and changed(f.last, job) then
    local cerr = call_back(on_progress, "on_progress", nil, job)
    if cerr then
      cerr[t.key], cerr.job = id, job
      return true, nil, cerr
    end
  end
  f.last = job
  local st = job.status
  if st == t.done then return true, job end
  if st == "failed" then return true, nil, http.scrub(c, t.failure(job, id)) end
  if st == "cancelled" and t.cancel then
    return true, nil, E("job_cancelled", "the job was cancelled", { job_id = id, job = job })
  end
  return false, nil, nil, opts.interval or t.interval
end

-- Polls a followed job once. Returns final (true when the follow is over),
-- job, err, and (when not final) the seconds to wait before the next poll.
local function poll(c, f, opts)
  local left = f.deadline - now()
  if left <= 0 then return true, nil, timed_out(c, f, opts) end
  if opts.limiter then opts.limiter:take() end
  local id, t = f.id, f.target
  local job, e = http.api(c, { path = t.path .. f.path, job_id = t == JOB and id or nil, timeout = min(c.timeout, left),
                               strings = t.strings })
  if job then
    f.http2 = e.http_version == "2"
    job, e = t.check(job, id)
  end
  if job then
    f.unreachable_since = nil
    return judge(c, f, job, opts)
  end
  e[t.key] = id
  if e.retryable then
    f.last_err = e
    f.failures = f.failures + 1
    -- never sooner than the interval, whatever Retry-After says (0, a date past)
    local interval = opts.interval or t.interval
    local wait = max(interval, http.backoff(f.failures, interval, opts.max_backoff or D.max_backoff, e))
    if UNREACHABLE[e.code] then -- no answer at all: refused, unknown host
      local tn = now()
      f.unreachable_since = f.unreachable_since or tn
      local limit = opts.unreachable_timeout or D.unreachable_timeout
      if tn - f.unreachable_since >= limit then return true, nil, unreachable(f, e) end
      wait = min(wait, f.unreachable_since + limit - tn)
    else
      f.unreachable_since = nil
    end
    if opts.on_retry then
      local cerr = call_back(opts.on_retry, "on_retry", id, e, wait)
      if cerr then return true, nil, cerr end
    end
    return false, nil, nil, wait
  end
  e.job = f.last
  return true, nil, e
end

--- client:await (documented in client.lua)
---@param c viggle.Client
---@param job_id string
---@param opts viggle.AwaitOptions checked
---@param target viggle.Target|nil what job_id names (default JOB)
---@return table|nil job
---@return viggle.Error|nil err
function _M.await(c, job_id, opts, target)
  target = target or JOB
  local path, err = http.check_id(job_id, target.what)
  if not path then return nil, err end
  local f = new_follow(job_id, path, now() + (opts.timeout or D.await_timeout), target)
  while true do
    local final, job, e, wait = poll(c, f, opts)
    if final then return job, e end
    local left = f.deadline - now()
    if wait >= left then
      if left > 0 then loop.sleep(left) end
      return nil, timed_out(c, f, opts)
    end
    loop.sleep(wait)
  end
end

-- A shared cap on requests per second: each take() is spaced 1/rate apart.
local function new_limiter(rate)
  local spacing, next_at = 1 / rate, 0
  return { take = function()
    local t = now()
    local at = max(t, next_at)
    next_at = at + spacing
    if at > t then loop.sleep(at - t) end
  end }
end

-- ---- await_all ------------------------------------------------------------------
-- One call's state, a "round": its follows in a heap by their next poll, the
-- results, the summary and the options of its polls.

-- An entry of await_all's list: its target, id and escaped id, or nil, err.
-- A string is a job id; anything else goes through `resolve` (from the
-- client: viggle.assets knows assets and job tables).
local function entry(item, resolve)
  local t, id = JOB, item
  if type(item) ~= "string" and resolve then
    t, id = resolve(item)
    if not t then return nil, id end
  end
  local path, err = http.check_id(id, t.what)
  if not path then return nil, err end
  return t, id, path
end

local function new_round(c, job_ids, opts, resolve)
  local started = now()
  local round = {
    c = c, job_ids = job_ids, started = started, deadline = started + (opts.timeout or D.await_timeout),
    results = {}, due = heap.new(), places = {}, -- target key and id -> its places in job_ids
    turning = {}, -- worker slot -> the follow it is polling
    summary = { total = #job_ids, complete = 0, failed = 0, cancelled = 0, errors = 0, running = 0 },
  }
  for i, item in ipairs(job_ids) do
    local t, id, path = entry(item, resolve)
    local place = t and (t == JOB and id or t.key .. "=" .. id)
    if not t then
      round.results[i] = id
      round.summary.errors = round.summary.errors + 1
    elseif round.places[place] then
      round.places[place][#round.places[place] + 1] = i
    else
      round.places[place] = { i }
      local f = new_follow(id, path, round.deadline, t)
      f.place = place
      f[1] = started
      round.due:push(f)
    end
  end
  round.summary.running = round.due.n
  local on_update, user_progress = opts.on_update, opts.on_progress
  round.report = function()
    if on_update and not round.callback_error then
      round.callback_error = call_back(on_update, "on_update", nil, round.summary)
    end
  end
  round.popts = {
    interval = opts.interval, timeout = opts.timeout, max_backoff = opts.max_backoff,
    cancel_on_timeout = opts.cancel_on_timeout, limiter = opts.rate and new_limiter(opts.rate),
    unreachable_timeout = opts.unreachable_timeout, on_retry = opts.on_retry,
    on_progress = (user_progress or on_update) and function(j)
      if user_progress then user_progress(j) end
      round.report()
    end or nil,
  }
  return round
end

local function settle(round, f, job, err)
  local s = round.summary
  s.running = s.running - 1
  if job then s.complete = s.complete + 1
  elseif err.kind == "job_failed" or err.kind == "asset_failed" then s.failed = s.failed + 1
  elseif err.kind == "job_cancelled" then s.cancelled = s.cancelled + 1
  else s.errors = s.errors + 1 end
  for _, i in ipairs(round.places[f.place]) do round.results[i] = job or err end
  round.report()
end

-- Polls follow f once and settles it or puts it back for its next poll.
-- round.turning[slot] is f meanwhile: when worker `slot` raises, that job,
-- and only that one, gets the error (see join_workers).
local function turn(round, f, slot)
  round.turning[slot] = f
  local final, job, err, wait = poll(round.c, f, round.popts)
  round.turning[slot] = nil
  if final then
    settle(round, f, job, err)
  elseif now() + wait >= round.deadline then
    f[1] = round.deadline -- its last turn: the timeout at the deadline
    f.deadline = round.deadline
    round.due:push(f)
  else
    f[1] = now() + wait
    round.due:push(f)
  end
  return f
end

-- A worker takes the follow that is due first; when it is not due yet the
-- worker sleeps until it is (leaving it in the heap for whoever is free).
local function worker(round, slot)
  local due = round.due
  while due.n > 0 do
    local f = due:peek()
    local t = now()
    if f[1] > t then
      loop.sleep(f[1] - t)
    else
      turn(round, due:pop(), slot)
    end
  end
end

-- Starts the workers. One poll goes first, alone: it tells whether the API
-- speaks HTTP/2. If so, the burst that follows is multiplexed over a few
-- connections (about 100 requests each, libcurl's default) instead of
-- opening one per request. A first answer slower than a second (the
-- watchdog) holds the others no longer.
local function start_workers(round, n)
  local workers, rest_started = {}, false
  local function start_rest()
    if rest_started then return end
    rest_started = true
    for k = 2, n do workers[k] = loop.spawn(worker, round, k) end
  end
  local watchdog = n > 1 and loop.spawn(function() loop.sleep(1) start_rest() end)
  workers[1] = loop.spawn(function()
    local first = round.due:peek()
    if first and first[1] <= now() then
      turn(round, round.due:pop(), 1)
      if first.http2 and not rest_started then round.release_mux = loop.multiplexing(ceil(n / 100)) end
    end
    start_rest()
    worker(round, 1)
  end)
  return workers, watchdog
end

-- Joins the workers. One that raised (a bug of viggle's, never the world's:
-- that is returned as errors) settles the job it was polling with an
-- "internal" error; the other jobs go on. Returns true when one raised.
local function join_workers(round, workers)
  local raised = false
  for slot, w in ipairs(workers) do
    local ok, err = w:join()
    local f = round.turning[slot]
    if not ok and f then
      raised = true
      round.turning[slot] = nil
      local shown, text = pcall(tostring, err)
      text = shown and type(text) == "string" and text:match("^[^\n]*") or type(err)
      settle(round, f, nil, E("internal", "following the job raised (a bug: please report it): " .. text,
        { job_id = f.id, job = f.last, cause = err }))
    elseif not ok then
      round.failure = round.failure or (errors.is(err) and err) or nil
    end
  end
  return raised
end

--- client:await_all (documented in client.lua)
---@param c viggle.Client
---@param job_ids (string|table)[] job ids, and what `resolve` knows
---@param opts viggle.AwaitAllOptions checked
---@param resolve (fun(item: any): viggle.Target|nil, string|viggle.Error)|nil a non-string entry -> its target and id
---@return (table|viggle.Error)[] results
---@return viggle.Summary summary
---@return viggle.Error|nil callback_error
function _M.await_all(c, job_ids, opts, resolve)
  if type(job_ids) ~= "table" then error("bad argument #1 to 'await_all' (table expected)", 3) end
  local round = new_round(c, job_ids, opts, resolve)
  local n = min(opts.concurrency or D.concurrency, round.due.n)
  loop.keep_connections(n)
  local workers, watchdog = start_workers(round, n)
  local raised = join_workers(round, workers)
  if watchdog then -- no task of this call outlives it
    watchdog:cancel()
    watchdog:join()
  end
  while raised and round.due.n > 0 do -- the jobs a dead worker left are followed on
    workers = {}
    for slot = 1, min(n, round.due.n) do workers[slot] = loop.spawn(worker, round, slot) end
    raised = join_workers(round, workers)
  end
  if round.release_mux then round.release_mux() end
  for i = 1, #job_ids do
    if round.results[i] == nil then
      local id = job_ids[i]
      round.results[i] = round.failure
        or E("cancelled", "not followed to the end", { job_id = type(id) == "string" and id or nil })
    end
  end
  round.summary.seconds = now() - round.started
  return round.results, round.summary, round.callback_error
end

return _M
