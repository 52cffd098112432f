--- The request plumbing under the client: URLs, option checks, the key store,
--- redaction, one HTTP exchange, one API call, and the retry policy of the
--- calls that may be repeated. See docs/architecture.md.
local core = require("viggle.core")
local errors = require("viggle.errors")
local loop = require("viggle.loop")

local type, tostring, setmetatable, error, pairs, pcall = type, tostring, setmetatable, error, pairs, pcall
local format, concat, min, max, random = string.format, table.concat, math.min, math.max, math.random
local floor, huge = math.floor, math.huge
local find = string.find
local E = errors.new

local _M = {}

--- Every default of the library, written once: each module reads it here.
_M.DEFAULTS = {
  base_url = "https://apis.viggle.ai",
  timeout = 30,                -- seconds for one API request
  connect_timeout = 10,        -- seconds
  max_body = 8 * 1024 * 1024,  -- bytes an API answer may have
  retries = 2,                 -- transient failures of one call retried
  unreachable_timeout = 60,    -- await/await_all end when the API cannot be reached this long
  max_retry_wait = 10,         -- longest wait before a retry of status/credits
  interval = 3,                -- seconds between polls
  asset_interval = 5,          -- seconds between polls of a character or scene
  await_timeout = 1800,        -- overall deadline of await/await_all
  max_backoff = 60,            -- cap of the backoff between failed polls
  concurrency = 32,            -- polls in flight at once in await_all
  stall_timeout = 60,          -- an upload/download moving nothing this long is given up
  post_max_wait = 60,          -- longest wait before the retry of a POST
}
local D = _M.DEFAULTS

--- Splits a URL: scheme, lowercased host:port (the default port made explicit), rest.
---@param url any
---@return string|nil scheme lowercased
---@return string|nil hostport
---@return string|nil rest path, query and fragment
function _M.split_url(url)
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
local split_url = _M.split_url

--- scheme://host:port of a URL, or nil.
---@param url any
---@return string|nil
function _M.origin(url)
  local scheme, hostport = split_url(url)
  return scheme and (scheme .. "://" .. hostport) or nil
end
local origin = _M.origin

--- A value quoted for a message, cut at 64 characters.
---@param s any
---@return string
function _M.quote(s)
  s = tostring(s)
  if #s > 64 then s = s:sub(1, 64) .. "..." end
  return (format("%q", s):gsub("\\\n", "\\n"))
end
local quote = _M.quote

--- A job id checked and escaped for a URL path, or nil, err. Nothing is sent
--- for a refused id.
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

-- The options each public function takes, and what each must be: "number"
-- (finite, >= 0), "positive" (finite, > 0), "count" (a whole number >= 0),
-- "string", "boolean", "function", "table", "any". README.md documents them.
local AWAIT = { interval = "number", timeout = "number", on_progress = "function", cancel_on_timeout = "boolean",
                max_backoff = "number", unreachable_timeout = "number", on_retry = "function" }
local function with(base, more)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(more) do t[k] = v end
  return t
end
_M.OPTIONS = {
  -- (viggle.new checks its values itself: a bad one is returned as invalid_argument)
  new = { api_key = "any", base_url = "any", timeout = "any", connect_timeout = "any",
          ca_file = "any", max_body = "any", retries = "any", user_agent = "any",
          on_request = "function" },
  status = { timeout = "number", retries = "count", max_retry_wait = "number" },
  cancel = { timeout = "number" },
  credits = { timeout = "number", retries = "count" },
  await = AWAIT,
  await_all = with(AWAIT, { concurrency = "count", rate = "positive", on_update = "function" }),
  render = { timeout = "number", retries = "count", on_retry = "function" },
  download = { on_progress = "function", mask = "boolean", overwrite = "boolean", timeout = "number",
               resume = "boolean", stall_timeout = "number" },
  run = with(AWAIT, { output = "string", overwrite = "boolean", mask = "boolean", on_download = "function",
                      on_created = "function", upload_timeout = "number", on_asset = "function" }),
  configure = { max_host_connections = "count", max_connects = "count", step_budget = "number" },
  -- characters and scenes (viggle.assets; their await takes await's options)
  create = { timeout = "number", retries = "count" },
  get = { timeout = "number", retries = "count" },
  delete = { timeout = "number", retries = "count" },
  import = { timeout = "number", retries = "count" },
  list = { timeout = "number", retries = "count", limit = "any", offset = "any" }, -- (assets checks their range)
  each = { timeout = "number", retries = "count", limit = "any", offset = "any" },
  install = { schedule = "function", wait = "function", max_connects = "count" }, -- viggle.uv
  setup = { max_connects = "count", command = "boolean", client = "table" },      -- viggle.nvim
}
local OPTIONS = _M.OPTIONS

-- Edit distance of two short strings (for "did you mean").
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The valid name closest to `name` among the keys of `names`, or nil when
--- none is close (a third of the letters differ at most, or the first four
--- are the same).
---@param name string
---@param names table name -> anything
---@return string|nil
function _M.closest(name, names)
  local best, best_d
  name = name:lower()
  for k in pairs(names) do
    local d = distance(name, k)
    local close = d <= max(2, floor(#k / 3)) or #name >= 4 and k:sub(1, 4) == name:sub(1, 4)
    if close and (not best_d or d < best_d or d == best_d and k < best) then
      best, best_d = k, d
    end
  end
  return best
end

local WANT = { number = "a finite number >= 0", positive = "a finite number > 0", count = "a whole number >= 0",
               string = "a string", boolean = "a boolean", ["function"] = "a function", table = "a table" }

-- Why value v is not of kind `want`, or nil when it is.
local function misfit(v, want)
  if want == "any" then return nil end
  if want == "number" or want == "positive" or want == "count" then
    if type(v) ~= "number" then return "got " .. type(v) end
    if v ~= v or v == huge or v == -huge then return "got " .. tostring(v) end
    if v < 0 or want == "positive" and v == 0 then return "got " .. tostring(v) end
    if want == "count" and v ~= floor(v) then return "got " .. tostring(v) end
    return nil
  end
  if type(v) ~= want then return "got " .. type(v) end
end

--- True when a URL's host is a loopback address (127.0.0.0/8, ::1, localhost).
---@param url string
---@return boolean
function _M.is_loopback(url)
  local _, hostport = split_url(url)
  local host = hostport and hostport:match("^(.*):%d*$")
  if not host then return false end
  return host == "localhost" or host == "[::1]" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- The options table of a public function: {} for nil. Raises (at the
--- caller of that function) for anything that is not a table, an unknown
--- option name (naming the closest valid one), a value of the wrong type or
--- a number that is negative or not finite, and (for a client `c` given) an
--- interval under a second to a base_url that is not a loopback address.
---@param opts any
---@param name string the function's name: a key of OPTIONS, and for the message
---@param c viggle.Client|nil the client, for the interval check
---@param level integer|nil the level of the caller to blame (default 3: the caller of the function)
---@return table
function _M.check_opts(opts, name, c, level)
  level = level or 3
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(format("bad argument to '%s' (table expected, got %s)", name, type(opts)), level) end
  local spec = OPTIONS[name]
  for k, v in pairs(opts) do
    local want = spec[k]
    if not want then
      local hint = type(k) == "string" and _M.closest(k, spec)
      error(format("unknown option %s to '%s'%s", type(k) == "string" and ("'" .. k .. "'") or tostring(k), name,
        hint and format(" (did you mean '%s'?)", hint) or ""), level)
    end
    local why = misfit(v, want)
    if why then error(format("bad option '%s' to '%s' (%s expected, %s)", k, name, WANT[want], why), level) end
  end
  if c and opts.interval and opts.interval < 1 and not c.loopback then
    error(format("bad option 'interval' to '%s' (at least 1 second, got %s: under a second only for a "
      .. "loopback base_url such as a local mock)", name, tostring(opts.interval)), level)
  end
  return opts
end

-- API keys live here, not in the client table, so printing or dumping a
-- client never shows one.
local secrets = setmetatable({}, { __mode = "k" })
local api_headers = setmetatable({}, { __mode = "k" }) -- they hold the key too
local get_specs = setmetatable({}, { __mode = "k" })   -- and so do these
local raw_text = setmetatable({}, { __mode = "k" })    -- answer table -> the JSON text it came from

--- Stores the API key of a client (nil: none).
---@param client viggle.Client
---@param key string|nil
---@return nil
function _M.set_key(client, key) secrets[client] = key end
--- True when the client has an API key.
---@param client viggle.Client
---@return boolean
function _M.has_key(client) return secrets[client] ~= nil end

--- The error of a call that needs a key when the client has none.
---@param client viggle.Client
---@return viggle.Error|nil err
function _M.need_key(client)
  if not secrets[client] then
    return E("auth", "no API key: set VIGGLE_API_KEY or pass api_key to viggle.new")
  end
end

-- The shortest start of a key that still counts as the key when a text
-- was cut in the middle of one.
local MIN_KEY_PREFIX = 6

--- Never lets the key out in a message, whatever a server echoes back.
--- Works on text already cut: a start of the key (6 characters or more)
--- that ends the text, or ends it before a "..." or a closing quote, goes too.
---@param client viggle.Client
---@param s any
---@return any s with every copy of the key replaced by "[redacted]"
function _M.redact(client, s)
  local key = secrets[client]
  if not key or type(s) ~= "string" then return s end
  if s:find(key, 1, true) then
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
  local body, tail = s:match('^(.-)(%.*"?)$')
  for n = #key - 1, min(MIN_KEY_PREFIX, #key), -1 do
    if body:sub(-n) == key:sub(1, n) then return body:sub(1, -n - 1) .. "[redacted]" .. tail end
  end
  return s
end
local redact = _M.redact

--- The error with the key taken out of every text it carries (message,
--- code, action, a cause that is text); returns it.
---@param client viggle.Client
---@param e viggle.Error
---@return viggle.Error e
function _M.scrub(client, e)
  if secrets[client] then
    e.message, e.code, e.action = redact(client, e.message), redact(client, e.code), redact(client, e.action)
    if type(e.cause) == "string" then e.cause = redact(client, e.cause) end
  end
  return e
end
local scrub = _M.scrub

--- A value quoted for a message (see quote) with the key of `client` taken
--- out before the cut (a cut key would not be found after it) and after.
---@param client viggle.Client
---@param s any
---@return string
function _M.quote_for(client, s)
  return redact(client, quote(redact(client, tostring(s))))
end

-- The header lines of a request. User-Agent goes in the list: libcurl 7.88
-- rebuilds the header of CURLOPT_USERAGENT on every request, a list line
-- costs nothing extra.
local function header_lines(c, o, to_api, key)
  if to_api and o.json ~= false then
    local headers = api_headers[c] -- made once: the same lines for every API call
    if not headers then
      headers = { "User-Agent: " .. c.user_agent, "Accept: application/json" }
      if key then headers[3] = "Authorization: Bearer " .. key end
      api_headers[c] = headers
    end
    return headers
  end
  local headers = { "User-Agent: " .. c.user_agent }
  if key and to_api then headers[#headers + 1] = "Authorization: Bearer " .. key end
  if o.json ~= false then headers[#headers + 1] = "Accept: application/json" end
  return headers
end

-- The request description handed to the C core.
local function request_spec(c, o, url, to_api, key)
  local headers = header_lines(c, o, to_api, key)
  if o.content_type then -- a body of our own (JSON): the shared lines are copied, not changed
    local own = { "Content-Type: " .. o.content_type }
    for i = 1, #headers do own[i + 1] = headers[i] end
    headers = own
  end
  local timeout = o.timeout or c.timeout
  local connect_timeout = min(c.connect_timeout, timeout > 0 and timeout or c.connect_timeout)
  if not o.url and not o.method and not o.output then
    -- An API GET (a status poll): one table per client, refilled, read by
    -- setup before anything can yield, so nothing is allocated per poll.
    local spec = get_specs[c]
    if not spec then
      spec = { headers = headers, ca_file = c.ca_file, follow = not key }
      get_specs[c] = spec
    end
    spec.url, spec.timeout, spec.connect_timeout = url, timeout, connect_timeout
    spec.max_body = o.max_body or c.max_body
    return spec
  end
  return {
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
    ca_file = c.ca_file,
    max_body = o.max_body or c.max_body,
    -- A request that carries the key never follows a redirect anywhere.
    follow = not (key and to_api),
  }
end

--- One HTTP exchange of client `c`. `o`: url or path, method, body, content_type, form,
--- output, append, resume_from, timeout, low_speed_time, tick, max_body,
--- job_id, json (false: no Accept JSON). Returns the response table (any
--- status), or nil, err for transport failures.
---@param c viggle.Client
---@param o table the exchange
---@return table|nil response {status, headers, body, http_version, ...}
---@return viggle.Error|nil err
function _M.exchange(c, o)
  local url, to_api = o.url, true
  if url then to_api = origin(url) == c.origin else url = c.base_url .. o.path end
  local key = secrets[c]
  local spec = request_spec(c, o, url, to_api, key)
  local r, msg, code = loop.acquire()
  if not r then return nil, errors.from_transport(msg, code, { job_id = o.job_id }) end
  local ok
  ok, msg, code = r:setup(spec)
  if not ok then
    loop.release(r)
    return nil, scrub(c, errors.from_transport(msg, code, { job_id = o.job_id }))
  end
  local tick = o.tick
  local started = c.on_request and core.now()
  local res, tmsg, tcode = loop.transfer(r, tick and function() return tick(r) end)
  loop.release(r)
  local err
  if not res then err = scrub(c, errors.from_transport(tmsg, tcode, { job_id = o.job_id })) end
  if started then -- never the headers: the key stays out of it
    pcall(c.on_request, { method = o.method or "GET", url = url, status = res and res.status, error = err,
                          seconds = core.now() - started })
  end
  if err then return nil, err end
  return res
end

--- An API call of client `c`: the answer decoded from JSON and the response,
--- or nil, err.
---@param c viggle.Client
---@param o table the exchange (see exchange), and empty_ok, strings (core.decode's)
---@return table|nil answer
---@return table|viggle.Error|nil response_or_err
function _M.api(c, o)
  local res, err = _M.exchange(c, o)
  if not res then return nil, err end
  local body = res.body or ""
  local decoded, derr
  if body ~= "" then decoded, derr = core.decode(body, o.strings) end
  if res.status < 200 or res.status >= 300 then
    return nil, scrub(c, errors.from_http(res, decoded, { job_id = o.job_id }))
  end
  local retryable = o.method == nil or o.method == "GET"
  if body == "" then
    if o.empty_ok then
      local t = {}
      raw_text[t] = "{}"
      return t, res
    end
    return nil, E("decode", "the answer has an empty body", { status = res.status, job_id = o.job_id,
      retryable = retryable })
  end
  if type(decoded) ~= "table" then
    return nil, E("decode", "the answer is not a JSON object: " .. (derr and redact(c, tostring(derr)) or _M.quote_for(c, body)),
      { status = res.status, job_id = o.job_id, retryable = retryable })
  end
  raw_text[decoded] = body
  return decoded, res
end

--- The JSON text an API answer (a job table, ...) was decoded from, or nil:
--- decoding turns `[]` into a table like `{}` and drops nulls, the text keeps
--- them. Held only as long as the table lives.
---@param answer table a table returned by status, await, await_all, cancel, credits or render
---@return string|nil
function _M.raw(answer) return raw_text[answer] end

--- Seconds to wait before retry number `attempt` (1, 2, ...): exponential
--- backoff with full jitter, capped; a server's Retry-After wins.
---@param attempt integer
---@param base number seconds before the first retry, at most
---@param cap number seconds, at most
---@param err viggle.Error|nil the error retried (its retry_after wins)
---@return number seconds
function _M.backoff(attempt, base, cap, err)
  if err and err.retry_after then return err.retry_after end
  return random() * min(cap, base * 2 ^ (attempt - 1))
end
local backoff = _M.backoff

--- An API call made again for retryable errors, at most `retries` more
--- times, waiting no more than `max_wait` seconds before one. Returns the
--- decoded answer and the response, or nil, err.
---@param c viggle.Client
---@param call table the exchange (see api)
---@param retries integer|nil default the client's
---@param max_wait number|nil default DEFAULTS.max_retry_wait
---@return table|nil answer
---@return viggle.Error|nil err
function _M.api_with_retries(c, call, retries, max_wait)
  local attempt = 0
  while true do
    local answer, err = _M.api(c, call)
    if answer ~= nil then return answer, err end
    if not err.retryable or attempt >= (retries or c.retries) then return nil, err end
    attempt = attempt + 1
    local wait = backoff(attempt, 0.25, 4, err)
    if wait > (max_wait or D.max_retry_wait) then return nil, err end
    loop.sleep(wait)
  end
end

-- Only what surely never reached the server is retried for a POST: a
-- refused connection, or a 429/503 that names when to come back.
local function post_retryable(err)
  if err.code == "COULDNT_CONNECT" or err.code == "COULDNT_RESOLVE_HOST" then return true end
  return err.status == 429 or err.status == 503 and err.retry_after ~= nil
end

-- Failures that prove the request never reached the server whole: nothing
-- was created, so sending it again cannot pay twice. (A failed send or a
-- local read error leaves a body the server cannot have accepted.)
local NOT_SENT = {
  COULDNT_CONNECT = true, COULDNT_RESOLVE_HOST = true, COULDNT_RESOLVE_PROXY = true,
  SSL_CONNECT_ERROR = true, PEER_FAILED_VERIFICATION = true, SSL_CERTPROBLEM = true, SSL_CIPHER = true,
  SSL_CACERT_BADFILE = true, SEND_ERROR = true, READ_ERROR = true, SETUP_FAILED = true, IO_ERROR = true,
  URL_MALFORMAT = true, UNSUPPORTED_PROTOCOL = true,
}

-- True when a failed POST may have created something all the same: the
-- request may have been sent whole and no definite answer came back (a
-- dropped connection, a timeout, a 5xx or 408, an answer that could not be read).
local function may_have_created(err)
  if err.kind == "invalid_argument" or err.kind == "auth" and not err.status then return false end
  if err.status == 429 or err.status == 503 and err.retry_after then return false end
  if err.status then return err.status >= 500 or err.status == 408 or (err.status < 300 and err.kind == "decode") end
  return not NOT_SENT[err.code]
end

--- A POST to the API (it may cost credits), made again only when it surely
--- never reached the server or was not taken (post_retryable: a refused
--- connection, a 429, a 503 with Retry-After), at most `retries` more times.
--- A failed one says err.uncertain when it may have created something all the
--- same: sending it again could pay twice.
--- No overall timeout unless `call.timeout`; a stalled upload is given up.
---@param c viggle.Client
---@param call table the exchange (see api), without method
---@param retries integer|nil default the client's
---@param on_retry fun(err: viggle.Error, delay: number)|nil called before each retry (what it raises ends the call as "callback")
---@return table|nil answer
---@return viggle.Error|nil err
function _M.post(c, call, retries, on_retry)
  call.method = "POST"
  call.timeout = call.timeout or 0
  call.low_speed_time = call.low_speed_time or D.stall_timeout
  local attempt, err = 0
  while true do
    local answer
    answer, err = _M.api(c, call)
    if answer then return answer end
    if attempt >= (retries or c.retries) or not post_retryable(err) then break end
    attempt = attempt + 1
    local wait = err.retry_after or backoff(attempt, 1, 8) -- a 429 without Retry-After: 1, 2, 4... s at most
    if wait > D.post_max_wait then break end
    if on_retry then
      local ok, cerr = pcall(on_retry, err, wait)
      if not ok then
        return nil, errors.new("callback", "on_retry raised: " .. tostring(cerr), { cause = cerr })
      end
    end
    loop.sleep(wait)
  end
  err.uncertain = may_have_created(err) or nil
  if not post_retryable(err) then err.retryable = false end -- the caller must not send it again either
  return nil, err
end

return _M
