--- The client: one per API key and base URL. Every method returns its result,
--- or `nil, err` (a viggle.Error) for what the world does; misuse (a wrong
--- argument type) raises. Inside a task (viggle.spawn) every method yields
--- while it waits; outside it blocks.
local core = require("viggle.core")
local errors = require("viggle.errors")
local loop = require("viggle.loop")
local heap = require("viggle.heap")

local type, tostring, setmetatable, ipairs, error, pcall = type, tostring, setmetatable, ipairs, error, pcall
local format, concat, min, max, floor, random = string.format, table.concat, math.min, math.max, math.floor, math.random
local find = string.find
local getenv, now = os.getenv, core.now
local E = errors.new

local _M = {}

---@class viggle.Client
---@field base_url string
---@field timeout number
---@field connect_timeout number
---@field user_agent string
local Client = {}
Client.__index = Client
_M.Client = Client

---@class viggle.Options
---@field base_url string|nil default $VIGGLE_BASE_URL, then https://apis.viggle.ai
---@field api_key string|nil default $VIGGLE_API_KEY
---@field timeout number|nil seconds for each request (default 30)
---@field connect_timeout number|nil seconds (default 10)
---@field user_agent string|nil
---@field ca_file string|nil CA bundle; TLS is always verified
---@field max_body integer|nil bytes an API answer may have (default 8 MiB)
---@field retries integer|nil transient failures of one status/credits call retried (default 2)

---@class viggle.AwaitOptions
---@field interval number|nil seconds between polls (default 3)
---@field timeout number|nil overall deadline in seconds (default 1800)
---@field on_progress fun(job: table)|nil called when status, checkpoint or progress_pct change
---@field cancel_on_timeout boolean|nil send DELETE when the deadline passes
---@field max_backoff number|nil cap of the backoff after failures (default 60)

---@class viggle.AwaitAllOptions: viggle.AwaitOptions
---@field concurrency integer|nil requests in flight at once (default 32)
---@field rate number|nil at most this many status requests per second, shared by all jobs
---@field on_update fun(summary: viggle.Summary)|nil called when any job changes or ends

---@class viggle.Summary
---@field total integer
---@field complete integer
---@field failed integer
---@field cancelled integer
---@field errors integer
---@field running integer
---@field seconds number

---@class viggle.RenderParams
---@field ref_image string|nil character image file (PNG/JPG), streamed from disk
---@field ref_image_url string|nil
---@field driving_video string|nil motion video file (MP4), streamed from disk
---@field driving_video_url string|nil
---@field character_id string|nil
---@field scene_id string|nil
---@field character_mapping table<string, string>|string|nil segment uuid -> character id
---@field model "V4_Preview"|"V3_Preview"|nil
---@field background_mode "original"|"solid"|"transparent"|"inpaint"|nil
---@field bg_color integer[]|string|nil {r, g, b} or "r,g,b"
---@field fast boolean|nil

---@class viggle.DownloadOptions
---@field mask boolean|nil the alpha mask of a transparent render
---@field overwrite boolean|nil replace an existing file
---@field on_progress fun(bytes: integer, total: integer|nil)|nil
---@field timeout number|nil
---@field resume boolean|nil resume a .part (default true)

-- API keys live here, not in the client table, so printing or dumping a
-- client never shows one.
local secrets = setmetatable({}, { __mode = "k" })
local api_headers = setmetatable({}, { __mode = "k" }) -- they hold the key too
local get_specs = setmetatable({}, { __mode = "k" })   -- and so do these

local DEFAULT_BASE_URL = "https://apis.viggle.ai"
local TERMINAL = { complete = true, failed = true, cancelled = true }
_M.TERMINAL = TERMINAL

-- scheme, lowercased host[:port] with the default port made explicit, rest
local function split_url(url)
  if type(url) ~= "string" then return nil end
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  if authority == "" or authority:find("@", 1, true) then return nil end
  local host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  if port == "" then port = scheme == "https" and "443" or scheme == "http" and "80" or "" end
  return scheme, host:lower() .. ":" .. port, rest
end

local function origin(url)
  local scheme, hostport = split_url(url)
  return scheme and (scheme .. "://" .. hostport) or nil
end

local function quote(s)
  s = tostring(s)
  if #s > 64 then s = s:sub(1, 64) .. "..." end
  return (format("%q", s):gsub("\\\n", "\\n"))
end

--- Checks a job id and returns it escaped for a URL path, or nil, err.
--- Refused: not a string, empty, over 256 bytes, / ? # %, whitespace,
--- control characters, "..". Nothing is sent for a refused id.
---@param id any the job id to check
---@param what string|nil what to call it in messages (default "job id")
---@return string|nil escaped the id, percent-encoded for a URL path
---@return viggle.Error|nil err
function _M.check_id(id, what)
  -- the common case, an id of letters, digits, _ and -, needs no escaping
  if type(id) == "string" and #id <= 256 and find(id, "^[%w_%-]+$") then return id end
  what = what or "job id"
  local bad
  if type(id) ~= "string" then
    return nil, E("invalid_argument", format("%s must be a string, got %s", what, type(id)))
  elseif id == "" then bad = "is empty"
  elseif #id > 256 then bad = "is longer than 256 bytes"
  elseif id:find("[/?#%%]") then bad = "must not contain / ? # or %"
  elseif id:find("[%s%c]") then bad = "must not contain whitespace or control characters"
  elseif id:find("..", 1, true) then bad = "must not contain '..'"
  end
  if bad then return nil, E("invalid_argument", format("%s %s %s", what, quote(id), bad)) end
  return (id:gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

local function check_opts(opts, name)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(format("bad argument to '%s' (table expected, got %s)", name, type(opts)), 3) end
  return opts
end

--- Makes a client. Options: base_url (default $VIGGLE_BASE_URL or
--- https://apis.viggle.ai), api_key (default $VIGGLE_API_KEY), timeout (each
--- request, seconds, default 30), connect_timeout (default 10), user_agent,
--- ca_file (CA bundle for TLS; verification is always on), max_body (bytes
--- an API answer may have, default 8 MiB), retries (transient failures of a
--- single status call retried, default 2).
---@param opts viggle.Options|nil
---@return viggle.Client|nil client
---@return viggle.Error|nil err
function _M.new(opts)
  opts = check_opts(opts, "new")
  local base = opts.base_url or getenv("VIGGLE_BASE_URL")
  if base == nil or base == "" then base = DEFAULT_BASE_URL end
  local scheme, _, rest = split_url(base)
  if scheme ~= "http" and scheme ~= "https" or rest:find("[?#]") then
    return nil, E("invalid_argument", "base_url must be an http(s) URL without a query, got " .. quote(base))
  end
  base = base:gsub("/+$", "")
  local key = opts.api_key
  if key == nil then key = getenv("VIGGLE_API_KEY") end
  if key == "" then key = nil end
  if key ~= nil and (type(key) ~= "string" or key:find("[%s%c]")) then
    return nil, E("invalid_argument", "api_key must be a string without whitespace or control characters")
  end
  if opts.user_agent ~= nil and (type(opts.user_agent) ~= "string" or opts.user_agent:find("%c")) then
    return nil, E("invalid_argument", "user_agent must be a string without control characters")
  end
  for _, k in ipairs({ "timeout", "connect_timeout", "max_body", "retries" }) do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] < 0) then
      return nil, E("invalid_argument", k .. " must be a non-negative number")
    end
  end
  local self = setmetatable({
    base_url = base,
    origin = origin(base),
    timeout = opts.timeout or 30,
    connect_timeout = opts.connect_timeout or 10,
    user_agent = opts.user_agent or format("viggle-lua/%s libcurl/%s", core.version, core.curl_version),
    ca_file = opts.ca_file,
    max_body = opts.max_body or 8 * 1024 * 1024,
    retries = opts.retries or 2,
  }, Client)
  secrets[self] = key
  return self
end

function Client:__tostring()
  return format("viggle.client(%s, %s)", self.base_url, secrets[self] and "key set" or "no key")
end

--- True when the client has an API key.
---@return boolean
function Client:has_key() return secrets[self] ~= nil end

-- Never lets the key out in a message, whatever a server echoes back.
local function redact(self, s)
  local key = secrets[self]
  if key and type(s) == "string" and s:find(key, 1, true) then
    local out, i = {}, 1
    while true do
      local a, b = s:find(key, i, true)
      if not a then break end
      out[#out + 1] = s:sub(i, a - 1)
      out[#out + 1] = "[redacted]"
      i = b + 1
    end
    out[#out + 1] = s:sub(i)
    s = concat(out)
  end
  return s
end

--- One HTTP exchange. `o`: url or path, method, headers, body, form, output,
--- append, resume_from, timeout, tick, max_body, job_id, json (Accept JSON).
--- Returns the response table (any status), or nil, err for transport failures.
function Client:_http(o)
  local url, to_api = o.url, true
  if url then to_api = origin(url) == self.origin else url = self.base_url .. o.path end
  local key = secrets[self]
  -- User-Agent goes in the header list: libcurl 7.88 rebuilds the header of
  -- CURLOPT_USERAGENT on every request, a list line costs nothing extra.
  local headers
  if to_api and o.json ~= false then
    headers = api_headers[self] -- made once: the same lines for every API call
    if not headers then
      headers = { "User-Agent: " .. self.user_agent, "Accept: application/json" }
      if key then headers[3] = "Authorization: Bearer " .. key end
      api_headers[self] = headers
    end
  else
    headers = { "User-Agent: " .. self.user_agent }
    if key and to_api then headers[#headers + 1] = "Authorization: Bearer " .. key end
    if o.json ~= false then headers[#headers + 1] = "Accept: application/json" end
  end
  local timeout = o.timeout or self.timeout
  local connect_timeout = min(self.connect_timeout, timeout > 0 and timeout or self.connect_timeout)
  local spec
  if not o.url and not o.method and not o.output then
    -- An API GET (a status poll): one table per client, refilled, read by
    -- setup before anything can yield, so nothing is allocated per poll.
    spec = get_specs[self]
    if not spec then
      spec = { headers = headers, ca_file = self.ca_file, follow = not key }
      get_specs[self] = spec
    end
    spec.url, spec.timeout, spec.connect_timeout = url, timeout, connect_timeout
    spec.max_body = o.max_body or self.max_body
  else
    spec = {
      url = url,
      method = o.method,
      headers = headers,
      body = o.body,
      form = o.form,
      output = o.output,
      append = o.append,
      resume_from = o.resume_from,
      timeout = timeout,
      connect_timeout = connect_timeout,
      low_speed_time = o.low_speed_time,
      fresh_connect = o.method == "POST",
      ca_file = self.ca_file,
      max_body = o.max_body or self.max_body,
      -- A request that carries the key never follows a redirect anywhere.
      follow = not (key and to_api),
    }
  end
  local r = loop.acquire()
  local ok, msg, code = r:setup(spec)
  if not ok then
    loop.release(r)
    return nil, errors.from_transport(redact(self, msg), code, { job_id = o.job_id })
  end
  local tick = o.tick
  local res, tmsg, tcode = loop.transfer(r, tick and function() return tick(r) end)
  loop.release(r)
  if not res then
    return nil, errors.from_transport(redact(self, tmsg), tcode, { job_id = o.job_id })
  end
  return res
end

--- An API call: the answer decoded from JSON, or nil, err.
function Client:_api(o)
  local res, err = self:_http(o)
  if not res then return nil, err end
  local body = res.body or ""
  local decoded, derr
  if body ~= "" then decoded, derr = core.decode(body) end
  if res.status < 200 or res.status >= 300 then
    local e = errors.from_http(res, decoded, { job_id = o.job_id })
    e.message = redact(self, e.message)
    return nil, e
  end
  if body == "" then
    if o.empty_ok then return {}, res end
    return nil, E("decode", "the answer has an empty body", { status = res.status, job_id = o.job_id,
      retryable = o.method == nil or o.method == "GET" })
  end
  if type(decoded) ~= "table" then
    return nil, E("decode", "the answer is not a JSON object: " .. redact(self, tostring(derr or quote(body))),
      { status = res.status, job_id = o.job_id, retryable = o.method == nil or o.method == "GET" })
  end
  return decoded, res
end

-- Seconds to wait before retry number `attempt` (1, 2, ...): exponential
-- backoff with full jitter, capped; a server's Retry-After wins.
local function backoff(attempt, base, cap, err)
  if err and err.retry_after then return err.retry_after end
  return random() * min(cap, base * 2 ^ (attempt - 1))
end

-- An API call made again for retryable errors, at most `retries` more
-- times, waiting no more than `max_wait` seconds before one. Returns the
-- decoded answer alone, or nil, err.
local function api_with_retries(self, call, retries, max_wait)
  local attempt = 0
  while true do
    local answer, err = self:_api(call)
    if answer ~= nil then return answer end
    if not err.retryable or attempt >= retries then return nil, err end
    attempt = attempt + 1
    local wait = backoff(attempt, 0.25, 4, err)
    if wait > max_wait then return nil, err end
    loop.sleep(wait)
  end
end

local function check_job(job, id)
  if type(job.status) ~= "string" then
    return nil, E("decode", "the status answer has no status field", { job_id = id })
  end
  if job.job_id == nil then job.job_id = id end
  return job
end

--- GET /api/render/{job_id}: the job table (every field of the answer, JSON
--- null as nil, unknown fields kept), or nil, err. Options: timeout
--- (this call), retries (transient failures retried; default the client's).
---@param job_id string
---@param opts table|nil
---@return table|nil job
---@return viggle.Error|nil err
function Client:status(job_id, opts)
  if opts ~= nil then opts = check_opts(opts, "status") end
  local path, err = _M.check_id(job_id)
  if not path then return nil, err end
  local call = { path = "/api/render/" .. path, job_id = job_id, timeout = opts and opts.timeout }
  local job, e = api_with_retries(self, call, opts and opts.retries or self.retries, opts and opts.max_retry_wait or 10)
  if not job then return nil, e end
  return check_job(job, job_id)
end

local function need_key(self)
  if not secrets[self] then
    return E("auth", "no API key: set VIGGLE_API_KEY or pass api_key to viggle.new")
  end
end

--- DELETE /api/render/{job_id}: cancels the job (its credits are refunded).
--- Returns the answer (an empty table for an empty body), or nil, err.
---@param job_id string
---@param opts {timeout: number?}|nil
---@return table|nil answer the decoded answer ({} for an empty body)
---@return viggle.Error|nil err
function Client:cancel(job_id, opts)
  opts = check_opts(opts, "cancel")
  local path, err = _M.check_id(job_id)
  if not path then return nil, err end
  err = need_key(self)
  if err then return nil, err end
  local res
  res, err = self:_api({ method = "DELETE", path = "/api/render/" .. path, job_id = job_id,
                         timeout = opts.timeout, empty_ok = true })
  if not res then return nil, err end
  return res
end

--- GET /api/credits: {balance, total_purchased, total_used, updated_at}.
---@param opts {timeout: number?, retries: integer?}|nil
---@return {balance: number, total_purchased: number, total_used: number, updated_at: string}|nil
---@return viggle.Error|nil err
function Client:credits(opts)
  opts = check_opts(opts, "credits")
  local err = need_key(self)
  if err then return nil, err end
  return api_with_retries(self, { path = "/api/credits", timeout = opts.timeout }, opts.retries or self.retries, 10)
end

local new_follow -- defined with await below

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

local function call_back(fn, kind_label, job_id, ...)
  local ok, cerr = pcall(fn, ...)
  if ok then return nil end
  return E("callback", format("%s raised: %s", kind_label, tostring(cerr)), { job_id = job_id, cause = cerr })
end

--- Follows a job until it ends. Returns the job when complete, or nil, err:
--- kind "job_failed" (code and message from the job), "job_cancelled",
--- "timeout" (the deadline passed; err.job is the last job seen),
--- "callback" (on_progress raised; the job goes on), or the error that
--- cannot get better (not_found, auth, ...). Transient failures (network,
--- 5xx, 429, a garbled answer) never end the wait: they are retried with
--- capped exponential backoff and full jitter, honouring Retry-After.
--- Options: interval (s between polls, default 3), timeout (overall, default
--- 1800), on_progress(job) (called when status, checkpoint or progress_pct
--- change), cancel_on_timeout (send DELETE at the deadline), max_backoff
--- (default 60).
---@param job_id string
---@param opts viggle.AwaitOptions|nil
---@return table|nil job
---@return viggle.Error|nil err
function Client:await(job_id, opts)
  opts = check_opts(opts, "await")
  local path, err = _M.check_id(job_id)
  if not path then return nil, err end
  local f = new_follow(job_id, path, now() + (opts.timeout or 1800))
  while true do
    local final, job, e, wait = self:_poll(f, opts)
    if final then return job, e end
    local left = f.deadline - now()
    if wait >= left then
      if left > 0 then loop.sleep(left) end
      return nil, self:_timed_out(f, opts)
    end
    loop.sleep(wait)
  end
end

-- The state of one job being followed (await, await_all).
new_follow = function(job_id, path, deadline)
  return { 0, path = path, id = job_id, deadline = deadline, failures = 0 }
end

-- Polls a followed job once. Returns final (true when the follow is over),
-- job, err, and (when not final) the seconds to wait before the next poll.
function Client:_poll(f, opts)
  local left = f.deadline - now()
  if left <= 0 then return true, nil, self:_timed_out(f, opts) end
  if opts.limiter then opts.limiter:take() end
  local id = f.id
  local job, e = self:_api({ path = "/api/render/" .. f.path, job_id = id, timeout = min(self.timeout, left) })
  if job then
    f.http2 = e.http_version == "2"
    job, e = check_job(job, id)
  end
  if job then
    f.failures = 0
    local on_progress = opts.on_progress
    if on_progress and changed(f.last, job) then
      local cerr = call_back(on_progress, "on_progress", id, job)
      if cerr then
        cerr.job = job
        return true, nil, cerr
      end
    end
    f.last = job
    local st = job.status
    if st == "complete" then return true, job end
    if st == "failed" then
      return true, nil, E("job_failed", job.error_message or job.error or "the job failed",
        { job_id = id, code = job.error_code, job = job })
    end
    if st == "cancelled" then
      return true, nil, E("job_cancelled", "the job was cancelled", { job_id = id, job = job })
    end
    return false, nil, nil, opts.interval or 3
  elseif e.retryable then
    f.last_err = e
    f.failures = f.failures + 1
    return false, nil, nil, backoff(f.failures, opts.interval or 3, opts.max_backoff or 60, e)
  end
  e.job = f.last
  return true, nil, e
end

-- The timeout error of a follow whose deadline passed (and the DELETE of
-- cancel_on_timeout).
function Client:_timed_out(f, opts)
  local state = describe(f.last)
  if f.last_err and (not f.last or f.failures > 0) then state = state .. "; last error: " .. f.last_err.message end
  local terr = E("timeout", format("job still running after %gs (%s)", opts.timeout or 1800, state),
    { job_id = f.id, job = f.last, cause = f.last_err, retryable = false })
  if opts.cancel_on_timeout then
    local ok, cerr = self:cancel(f.id)
    terr.cancelled = ok ~= nil
    terr.cancel_error = cerr
  end
  return terr
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

--- Follows many jobs at once over one driver and reused connections.
--- Returns results in input order (each the job table, or its error), and a
--- summary {total, complete, failed, cancelled, errors, seconds}.
--- Options: those of await (interval, timeout is overall, cancel_on_timeout,
--- on_progress(job) per job), on_update(summary) when any job changes or
--- ends, concurrency (requests in flight at once, default 32), rate (cap on
--- requests per second, shared by all jobs). A duplicate id is polled once.
--- `concurrency` workers take the jobs that are due, earliest first; a job
--- waiting for its next poll is a small table, not a coroutine, so ten
--- thousand jobs cost little memory.
---@param job_ids string[]
---@param opts viggle.AwaitAllOptions|nil
---@return (table|viggle.Error)[] results in input order: a job table or its error
---@return viggle.Summary summary
---@return viggle.Error|nil callback_error an error raised by on_update
function Client:await_all(job_ids, opts)
  opts = check_opts(opts, "await_all")
  if type(job_ids) ~= "table" then error("bad argument #1 to 'await_all' (table expected)", 2) end
  if opts.rate ~= nil and (type(opts.rate) ~= "number" or opts.rate <= 0) then
    error("bad option 'rate' to 'await_all' (positive number expected)", 2)
  end
  local started = now()
  local results, summary = {}, { total = #job_ids, complete = 0, failed = 0, cancelled = 0, errors = 0, running = 0 }
  local deadline = started + (opts.timeout or 1800)
  local due = heap.new() -- follows by the time of their next poll
  local places = {}      -- job id -> its places in job_ids
  for i, id in ipairs(job_ids) do
    local path, err = _M.check_id(id)
    if err then
      results[i] = err
      summary.errors = summary.errors + 1
    elseif places[id] then
      places[id][#places[id] + 1] = i
    else
      places[id] = { i }
      local f = new_follow(id, path, deadline)
      f[1] = started
      due:push(f)
    end
  end
  summary.running = due.n
  local on_update, user_progress = opts.on_update, opts.on_progress
  local callback_error
  local function report()
    if on_update and not callback_error then
      callback_error = call_back(on_update, "on_update", nil, summary)
    end
  end
  local popts = {
    interval = opts.interval, timeout = opts.timeout, max_backoff = opts.max_backoff,
    cancel_on_timeout = opts.cancel_on_timeout, limiter = opts.rate and new_limiter(opts.rate),
    on_progress = (user_progress or on_update) and function(j)
      if user_progress then user_progress(j) end
      report()
    end or nil,
  }
  local function settle(f, job, err)
    summary.running = summary.running - 1
    if job then summary.complete = summary.complete + 1
    elseif err.kind == "job_failed" then summary.failed = summary.failed + 1
    elseif err.kind == "job_cancelled" then summary.cancelled = summary.cancelled + 1
    else summary.errors = summary.errors + 1 end
    for _, i in ipairs(places[f.id]) do results[i] = job or err end
    report()
  end
  -- A worker takes the follow that is due first; when it is not due yet the
  -- worker sleeps until it is (leaving it in the heap for whoever is free).
  local function worker()
    while due.n > 0 do
      local f = due:peek()
      local t = now()
      if f[1] > t then
        loop.sleep(f[1] - t)
      else
        due:pop()
        local final, job, err, wait = self:_poll(f, popts)
        if final then
          settle(f, job, err)
        elseif now() + wait >= deadline then
          f[1] = deadline -- its last turn: the timeout at the deadline
          f.deadline = deadline
          due:push(f)
        else
          f[1] = now() + wait
          due:push(f)
        end
      end
    end
  end
  local n = min(opts.concurrency or 32, due.n)
  loop.keep_connections(n)
  -- One poll goes first, alone: it tells whether the API speaks HTTP/2. If
  -- so, the burst that follows is multiplexed over a few connections (about
  -- 100 requests each, libcurl's default) instead of opening one per request.
  -- A first answer slower than a second holds the others no longer.
  local workers, rest_started = {}, false
  local function start_rest()
    if rest_started then return end
    rest_started = true
    for k = 2, n do workers[k] = loop.spawn(worker) end
  end
  local watchdog = n > 1 and loop.spawn(function() loop.sleep(1) start_rest() end)
  workers[1] = loop.spawn(function()
    local first = due:peek()
    if first and first[1] <= now() then
      due:pop()
      local final, job, err, wait = self:_poll(first, popts)
      if first.http2 and not rest_started then loop.multiplexing(math.ceil(n / 100)) end
      start_rest()
      if final then
        settle(first, job, err)
      else
        first[1] = now() + wait
        due:push(first)
      end
    end
    start_rest()
    worker()
  end)
  local failure
  for _, w in ipairs(workers) do
    local ok, err = w:join()
    if not ok then failure = failure or err end
  end
  if watchdog then watchdog:cancel() end
  loop.multiplexing(0)
  for i = 1, #job_ids do
    if results[i] == nil then
      results[i] = failure or E("cancelled", "not followed to the end", { job_id = job_ids[i] })
    end
  end
  summary.seconds = now() - started
  return results, summary, callback_error
end

-- ---- render, download, run ----------------------------------------------------
-- They live in viggle.render, loaded on first use: a status poll, an await or
-- the start of the CLI never parses them.
local function media() return require("viggle.render") end

--- POST /api/render: starts a render. `params`: ref_image, driving_video (file
--- paths, streamed from disk), ref_image_url, driving_video_url, character_id,
--- scene_id, character_mapping (table or JSON text), model, background_mode,
--- bg_color ({r, g, b} or "r,g,b"), fast. Returns the new job
--- {job_id, status, mode, enqueued_at} or nil, err.
--- Options: timeout (default none; a stalled upload is given up after 60 s),
--- retries (default 2; see above for what is retried).
---@param params viggle.RenderParams
---@param opts {timeout: number?, retries: integer?}|nil
---@return {job_id: string, status: string, mode: string?, enqueued_at: string?}|nil job
---@return viggle.Error|nil err
function Client:render(params, opts)
  return media().render(self, params, opts)
end

--- Downloads a finished video to `path`. `target`: a job table, a job id, or
--- a URL. Streams to `path .. ".part"` and renames on success (path never
--- holds a partial video); resumes a .part with Range; checks the length;
--- fetches a fresh link once when a job's link has expired (403/404).
--- Options: mask (the alpha mask of a transparent render), overwrite,
--- on_progress(bytes, total) (a few times a second), timeout (default none;
--- a stalled download is given up after 60 s).
--- Returns path, info {bytes, total, resumed_from, url} or nil, err.
---@param target table|string a job table, a job id, or a URL
---@param path string where the video goes
---@param opts viggle.DownloadOptions|nil
---@return string|nil path
---@return {bytes: integer, total: integer, resumed_from: integer, url: string}|viggle.Error info_or_err
function Client:download(target, path, opts)
  return media().download(self, target, path, opts)
end

--- Render, await and (with opts.output) download in one call. Options: those
--- of await (interval, timeout, on_progress, cancel_on_timeout), output (file
--- path), overwrite, mask, on_download(bytes, total).
--- Returns job, path (or nil) or nil, err (err.job_id set once a job exists).
---@param params viggle.RenderParams
---@param opts table|nil await options plus output, overwrite, mask, on_download, on_created
---@return table|nil job the complete job
---@return string|viggle.Error|nil path_or_err the downloaded file (with opts.output), or the error
function Client:run(params, opts)
  return media().run(self, params, opts)
end

--- What a render of `params` will cost: {credits, seconds, exact, fast,
--- source, reason} (see viggle.estimate), or nil, err.
---@param params viggle.RenderParams
---@param opts {timeout: number?}|nil
---@return {credits: integer|nil, seconds: number|nil, exact: boolean, fast: boolean, source: string, reason: string|nil}|nil
---@return viggle.Error|nil err
function Client:estimate(params, opts) return require("viggle.estimate").estimate(self, params, opts) end

--- GET /api/scenes/{id}: the scene (id, status, duration_seconds, ...), or nil, err.
---@param scene_id string
---@param opts {timeout: number?}|nil
---@return table|nil scene
---@return viggle.Error|nil err
function Client:scene(scene_id, opts) return require("viggle.estimate").scene(self, scene_id, opts) end

-- What viggle.render shares with this module (not part of the public API).
_M._private = {
  split_url = split_url, quote = quote, check_opts = check_opts, need_key = need_key,
  backoff = backoff, call_back = call_back,
}

return _M
