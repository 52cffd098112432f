--- The client: one per API key and base URL, a thin face over viggle.http
--- (requests, retries, the key) and viggle.follow (polling jobs). Every method
--- returns its result, or `nil, err` (a viggle.Error) for what the world does;
--- misuse raises. Inside a task (viggle.spawn) every method yields while it
--- waits; outside it blocks. README.md is the reference for every option.
local core = require("viggle.core")
local errors = require("viggle.errors")
local http = require("viggle.http")
local follow = require("viggle.follow")

local type, setmetatable, ipairs, tostring = type, setmetatable, ipairs, tostring
local huge, floor = math.huge, math.floor
local format = string.format
local getenv = os.getenv
local E = errors.new
local D = http.DEFAULTS
local check_opts, check_id = http.check_opts, http.check_id

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
---@field on_request fun(info: {method: string, url: string, status: integer?, error: viggle.Error?, seconds: number})|nil

---@class viggle.AwaitOptions
---@field interval number|nil seconds between polls (default 3)
---@field timeout number|nil overall deadline in seconds (default 1800)
---@field on_progress fun(job: table)|nil called when status, checkpoint or progress_pct change
---@field cancel_on_timeout boolean|nil send DELETE when the deadline passes
---@field max_backoff number|nil cap of the backoff after failures (default 60)
---@field unreachable_timeout number|nil end with kind network when the API cannot be reached this long (default 60)
---@field on_retry fun(err: viggle.Error, delay: number)|nil called before each retry of a failed poll

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


local TERMINAL = { complete = true, failed = true, cancelled = true }
_M.TERMINAL = TERMINAL

-- client.characters and client.scenes: small objects bound to the client
-- whose methods (viggle.assets) are loaded on first use.
local function assets() return require("viggle.assets") end
local function lazy(kind) return { __index = function(_, k) return assets()[kind][k] end } end
local CHARACTERS, SCENES = lazy("Characters"), lazy("Scenes")
local function resolve(item) return assets().resolve(item) end

-- The checked options of viggle.new: base_url, key; or nil, err.
local function check_new(opts)
  local base = opts.base_url or getenv("VIGGLE_BASE_URL")
  if base == nil or base == "" then base = D.base_url end
  local scheme, _, rest = http.split_url(base)
  if scheme ~= "http" and scheme ~= "https" or rest:find("[?#]") then
    return nil, E("invalid_argument", "base_url must be an http(s) URL without a query, got " .. http.quote(base))
  end
  local key = opts.api_key
  if key == nil then key = getenv("VIGGLE_API_KEY") end
  if key == "" then key = nil end
  if key ~= nil and (type(key) ~= "string" or key:find("[%s%c]")) then
    return nil, E("invalid_argument", "api_key must be a string without whitespace or control characters")
  end
  if opts.user_agent ~= nil and (type(opts.user_agent) ~= "string" or opts.user_agent:find("%c")) then
    return nil, E("invalid_argument", "user_agent must be a string without control characters")
  end
  if opts.ca_file ~= nil and type(opts.ca_file) ~= "string" then
    return nil, E("invalid_argument", "ca_file must be a file path")
  end
  -- NaN would mean no timeout, math.huge no cap: only finite numbers
  for _, k in ipairs({ "timeout", "connect_timeout", "max_body", "retries" }) do
    local v = opts[k]
    local whole = k == "max_body" or k == "retries"
    if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or v == huge or whole and v ~= floor(v)) then
      return nil, E("invalid_argument", format("%s must be a finite %s >= 0, got %s", k,
        whole and "whole number" or "number", tostring(v)))
    end
  end
  return (base:gsub("/+$", "")), key
end

--- Makes a client (options: README.md, "viggle.new").
---@param opts viggle.Options|nil
---@return viggle.Client|nil client
---@return viggle.Error|nil err
function _M.new(opts)
  opts = check_opts(opts, "new")
  local base, key = check_new(opts)
  if not base then return nil, key end
  local self = setmetatable({
    base_url = base,
    origin = http.origin(base),
    timeout = opts.timeout or D.timeout,
    connect_timeout = opts.connect_timeout or D.connect_timeout,
    user_agent = opts.user_agent or format("viggle-lua/%s libcurl/%s", core.version, core.curl_version),
    ca_file = opts.ca_file,
    max_body = opts.max_body or D.max_body,
    retries = opts.retries or D.retries,
    loopback = http.is_loopback(base),
    on_request = opts.on_request,
  }, Client)
  http.set_key(self, key)
  self.characters = setmetatable({ client = self }, CHARACTERS)
  self.scenes = setmetatable({ client = self }, SCENES)
  return self
end

function Client:__tostring()
  return format("viggle.client(%s, %s)", self.base_url, http.has_key(self) and "key set" or "no key")
end

local last_id, last_path -- the id asked for last, checked, and its path: a poll asks for it again and again

--- GET /api/render/{job_id}: the job table (every field of the answer, JSON
--- null as nil, unknown fields kept), or nil, err.
---@param job_id string
---@param opts {timeout: number?, retries: integer?, max_retry_wait: number?}|nil
---@return table|nil job
---@return viggle.Error|nil err
function Client:status(job_id, opts)
  if opts ~= nil then opts = check_opts(opts, "status") end -- (nil: no table made on the hot path)
  local path = last_path
  if job_id ~= last_id then
    local escaped, err = check_id(job_id)
    if not escaped then return nil, err end
    path = "/api/render/" .. escaped
    last_id, last_path = job_id, path
  end
  local call = { path = path, job_id = job_id, timeout = opts and opts.timeout, strings = follow.JOB_TEXT }
  local job, e = http.api_with_retries(self, call, opts and opts.retries, opts and opts.max_retry_wait)
  if not job then return nil, e end
  return follow.check_job(job, job_id)
end

--- DELETE /api/render/{job_id}: cancels the job (its credits are refunded).
---@param job_id string
---@param opts {timeout: number?}|nil
---@return table|nil answer the decoded answer ({} for an empty body)
---@return viggle.Error|nil err
function Client:cancel(job_id, opts)
  opts = check_opts(opts, "cancel")
  local path, err = check_id(job_id)
  if not path then return nil, err end
  err = http.need_key(self)
  if err then return nil, err end
  local res
  res, err = http.api(self, { method = "DELETE", path = "/api/render/" .. path, job_id = job_id,
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
  local err = http.need_key(self)
  if err then return nil, err end
  return http.api_with_retries(self, { path = "/api/credits", timeout = opts.timeout }, opts.retries)
end

--- Follows a job until it ends: the complete job, or nil, err (job_failed,
--- job_cancelled, timeout, callback, or an error that cannot get better).
--- Transient failures are retried with capped backoff and full jitter.
--- A table (a job, a character or a scene: see await_all) is followed as
--- what it is: an asset until it is ready (asset_failed if it fails).
---@param job_id string|table
---@param opts viggle.AwaitOptions|nil
---@return table|nil job
---@return viggle.Error|nil err
function Client:await(job_id, opts)
  opts = check_opts(opts, "await", self)
  if type(job_id) == "table" then
    local target, id = resolve(job_id)
    if not target then return nil, id end
    return follow.await(self, id, opts, target)
  end
  return follow.await(self, job_id, opts)
end

--- Follows many jobs at once over one driver and reused connections; a
--- duplicate id is polled once. Besides job ids it takes tables: jobs,
--- characters and scenes (what viggle.assets' resolve knows).
---@param job_ids (string|table)[]
---@param opts viggle.AwaitAllOptions|nil
---@return (table|viggle.Error)[] results in input order: a job table or its error
---@return viggle.Summary summary
---@return viggle.Error|nil callback_error an error raised by on_update
function Client:await_all(job_ids, opts)
  return follow.await_all(self, job_ids, check_opts(opts, "await_all", self), resolve)
end

-- render, download and run live in viggle.render, loaded on first use: a
-- status poll, an await or the start of the CLI never parses them.
local function media() return require("viggle.render") end

--- POST /api/render: starts a render from files (streamed from disk), URLs
--- or ids; the new job {job_id, status, mode, enqueued_at}, or nil, err.
---@param params viggle.RenderParams
---@param opts {timeout: number?, retries: integer?}|nil
---@return {job_id: string, status: string, mode: string?, enqueued_at: string?}|nil job
---@return viggle.Error|nil err
function Client:render(params, opts)
  return media().render(self, params, opts)
end

--- Downloads a finished video to `path` through `path .. ".part"`.
---@param target table|string a job table, a job id, or a URL
---@param path string where the video goes
---@param opts viggle.DownloadOptions|nil
---@return string|nil path
---@return {bytes: integer, total: integer, resumed_from: integer, url: string}|viggle.Error info_or_err
function Client:download(target, path, opts)
  return media().download(self, target, path, opts)
end

--- Render, await and (with opts.output) download in one call.
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

--- POST /api/scenes/import: a scene from a template (client.scenes:import).
---@param params {template_id: string, name: string}
---@param opts {timeout: number?, retries: integer?}|nil
---@return table|nil scene {scene_id, id, status, credits_reserved, segments}
---@return viggle.Error|nil err
function Client:import_scene(params, opts)
  return self.scenes:import(params, opts)
end

return _M
