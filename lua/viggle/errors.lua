--- Error objects: every failure the world causes comes back as `nil, err`,
--- where `err` is one of these. `tostring(err)` reads well on one line.
local setmetatable, getmetatable, tostring, type, pairs = setmetatable, getmetatable, tostring, type, pairs
local concat, format, floor = table.concat, string.format, math.floor
-- the precise wall clock when the C core is there (it is, wherever a request
-- can be made); os.time() for a reader of errors alone
local has_core, core = pcall(require, "viggle.core")
local wall = has_core and core.wall or os.time

local _M = {}

---@alias viggle.ErrorKind
---| '"invalid_argument"' # bad input, refused before anything was sent
---| '"auth"'             # API key missing, invalid or expired (HTTP 401/403)
---| '"credits"'          # not enough credits (HTTP 402)
---| '"not_found"'        # the job (or asset) does not exist (HTTP 404)
---| '"rate_limited"'     # HTTP 429; retry_after says when to come back
---| '"api"'              # the API refused the request (4xx with an error code)
---| '"http"'             # an unexpected HTTP status (5xx, a proxy page, ...)
---| '"network"'          # connection refused, reset, dropped, truncated
---| '"timeout"'          # a request or a wait passed its deadline
---| '"tls"'              # certificate or TLS handshake failure
---| '"decode"'           # the answer is not the JSON the API describes (docs/api.md)
---| '"too_large"'        # the answer is larger than the body cap
---| '"job_failed"'       # the job ended as failed (code and message from the job)
---| '"job_cancelled"'    # the job ended as cancelled
---| '"asset_failed"'     # a character or scene ended as failed (code and message from it)
---| '"callback"'         # a callback of yours raised an error
---| '"io"'               # a local file could not be read or written
---| '"cancelled"'        # the wait was cancelled (task:cancel, Ctrl-C)
---| '"internal"'         # viggle itself raised while following a job (a bug); cause holds what

--- The closed set of kinds, documented in README.md.
_M.kinds = {
  invalid_argument = true, auth = true, credits = true, not_found = true,
  rate_limited = true, api = true, http = true, network = true, timeout = true,
  tls = true, decode = true, too_large = true, job_failed = true,
  job_cancelled = true, asset_failed = true, callback = true, io = true, cancelled = true, internal = true,
}

---@class viggle.Error
---@field kind viggle.ErrorKind
---@field message string
---@field status integer|nil HTTP status, when there was an answer
---@field code string|nil the API's error code (CS-...) or the transport's (COULDNT_CONNECT, ...)
---@field action string|nil what the API suggests doing
---@field job_id string|nil
---@field character_id string|nil the character concerned
---@field scene_id string|nil the scene concerned
---@field retry_after number|nil seconds the server asked to wait
---@field retryable boolean the same call may succeed later
---@field job table|nil the last job (or asset) table seen (job_failed, job_cancelled, asset_failed, timeout)
local Error = {}
Error.__index = Error
_M.Error = Error

function Error.__tostring(e)
  local parts = {}
  if e.status then parts[#parts + 1] = "HTTP " .. e.status end
  if e.code then parts[#parts + 1] = e.code end
  if e.job_id then parts[#parts + 1] = "job " .. e.job_id end
  if e.character_id then parts[#parts + 1] = "character " .. e.character_id end
  if e.scene_id then parts[#parts + 1] = "scene " .. e.scene_id end
  local s = "viggle: " .. e.kind .. ": " .. tostring(e.message)
  if #parts > 0 then s = s .. " (" .. concat(parts, ", ") .. ")" end
  if e.retry_after then s = s .. format(" retry after %gs", floor(e.retry_after * 10 + 0.5) / 10) end
  if e.action and e.action ~= "" then s = s .. "; " .. e.action end
  return (s:gsub("[\r\n]+", " "))
end

local RETRYABLE = { network = true, timeout = true, rate_limited = true }

--- Makes an error object. `fields.kind` must be one of `_M.kinds`.
---@param kind viggle.ErrorKind
---@param message string
---@param fields table|nil
---@return viggle.Error
function _M.new(kind, message, fields)
  if not _M.kinds[kind] then error("viggle: unknown error kind " .. tostring(kind), 2) end
  local e = { kind = kind, message = message }
  if fields then
    for k, v in pairs(fields) do e[k] = v end
  end
  if e.retryable == nil then e.retryable = RETRYABLE[kind] or false end
  return setmetatable(e, Error)
end

--- True when `x` is a viggle error object.
---@param x any
---@return boolean
function _M.is(x)
  return type(x) == "table" and getmetatable(x) == Error
end

-- Transport codes (from viggle.core) -> kinds.
local TRANSPORT = {
  OPERATION_TIMEDOUT = "timeout",
  PEER_FAILED_VERIFICATION = "tls", SSL_CONNECT_ERROR = "tls", SSL_CERTPROBLEM = "tls",
  SSL_CIPHER = "tls", SSL_CACERT_BADFILE = "tls", SSL_SHUTDOWN_FAILED = "tls",
  TOO_LARGE = "too_large",
  WRITE_ERROR = "io", IO_ERROR = "io",
  URL_MALFORMAT = "invalid_argument", UNSUPPORTED_PROTOCOL = "invalid_argument",
  ABORTED = "cancelled",
}

--- An error from the transport (no HTTP answer, or a broken one).
---@param message string
---@param code string the transport code from viggle.core
---@param fields table|nil
---@return viggle.Error
function _M.from_transport(message, code, fields)
  local kind = TRANSPORT[code] or "network"
  fields = fields or {}
  fields.code = code
  return _M.new(kind, message, fields)
end

local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- Days since 1970-01-01 of a civil date (proleptic Gregorian), no time zone.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Parses an HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT") to a Unix time.
---@param s string
---@return integer|nil unix_time
function _M.parse_http_date(s)
  local d, mon, y, hh, mm, ss = s:match("^%a+,%s+(%d+)%s+(%a+)%s+(%d+)%s+(%d+):(%d+):(%d+)%s+GMT$")
  if not d or not months[mon] then return nil end
  return days_from_civil(tonumber(y), months[mon], tonumber(d)) * 86400
         + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
end

--- Retry-After (seconds, or an HTTP date) -> seconds from now, or nil.
---@param value string|nil the header
---@param now_unix number|nil the wall clock (default core.wall(): os.time() is
--- coarse and whole, so a date read at a second's edge would wait a second more)
---@return number|nil seconds
function _M.parse_retry_after(value, now_unix)
  if type(value) ~= "string" then return nil end
  local secs = value:match("^%s*(%d+)%s*$")
  if secs then return tonumber(secs) end
  local t = _M.parse_http_date(value:match("^%s*(.-)%s*$"))
  if not t then return nil end
  local wait = t - (now_unix or wall())
  return wait > 0 and wait or 0
end

local STATUS_KIND = { [401] = "auth", [403] = "auth", [402] = "credits", [404] = "not_found", [429] = "rate_limited" }

--- An error from an HTTP answer that was not a success. `decoded` is the
--- decoded body when it was JSON. Both API error shapes are understood:
--- `{"detail": {"error_code", "message", "action"}}` and `{"detail": "text"}`.
---@param res table the response from viggle.core
---@param decoded table|nil the decoded body
---@param fields table|nil
---@return viggle.Error
function _M.from_http(res, decoded, fields)
  local status = res.status
  local kind = STATUS_KIND[status]
  local code, message, action
  if type(decoded) == "table" then
    local detail = decoded.detail
    if type(detail) == "table" then
      code = detail.error_code or detail.code
      message = detail.message or detail.msg
      action = detail.action
      if message == nil and type(detail[1]) == "table" then message = detail[1].msg end -- 422 lists
    elseif type(detail) == "string" then
      message = detail
    end
    code = code or decoded.error_code
    message = message or decoded.message or decoded.error_message
    if type(decoded.error) == "string" then message = message or decoded.error end
  end
  if type(code) ~= "string" then code = nil end
  if type(message) ~= "string" then message = nil end
  if type(action) ~= "string" then action = nil end
  if not kind then
    if status >= 400 and status < 500 and code then kind = "api" else kind = "http" end
  end
  if not message then
    local body = res.body or ""
    local ctype = res.headers and res.headers["content-type"] or ""
    if body ~= "" and not ctype:find("html", 1, true) and #body <= 200 then
      message = "HTTP " .. status .. ": " .. body
    else
      message = "unexpected HTTP status " .. status
    end
  end
  fields = fields or {}
  fields.status, fields.code, fields.action = status, code, action
  fields.retry_after = _M.parse_retry_after(res.headers and res.headers["retry-after"])
  if fields.retryable == nil then
    fields.retryable = kind == "rate_limited" or status == 408 or status >= 500
  end
  return _M.new(kind, message, fields)
end

return _M
