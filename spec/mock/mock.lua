-- The mock Viggle Render API, running inside nginx (lua-nginx-module, LuaJIT).
-- The API it stands in for: docs/api.md.
-- All state lives in lua_shared_dicts (jobs, faults, log, config) so that any
-- worker answers the same. See README.md beside this file for the behaviour.
local cjson = require("cjson.safe")
local multipart = require("multipart")

local ngx = ngx
local null = cjson.null
local floor, max, min = math.floor, math.max, math.min
local concat = table.concat

local M = {}

local settings = { cdn_base = "http://127.0.0.1:0", prefix = "/tmp", mock_dir = "." }

local EMPTY_ARRAY = "\1mock-empty-array\1"

local DEFAULTS = {
  delay = 0,              -- seconds every /api answer waits first
  cdn_delay = 0,          -- same for CDN answers
  keys = { "sk-test-valid" },
  render_job = { advance = "time", step = 0.4 },
  cdn_ttl = 3600,
  cancel_empty = false,
  fast_busy = false,
  big_size = nil,
}

local CHECKPOINTS = { [0] = null, "ref_done", "dri_done", "bg_done", "render_done", "render_done" }
local PCTS = { [0] = 0, 20, 45, 70, 90, 100 }
local STAGE_STATUS = { [0] = "queued", "processing", "processing", "processing", "processing" }
local TOTAL_CHUNKS = 4

---------------------------------------------------------------------------
-- helpers

function M.init(s)
  for k, v in pairs(s or {}) do settings[k] = v end
end

function M.init_worker()
  math.randomseed(floor(ngx.now() * 1000) + ngx.worker.pid() * 7919)
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

local function encode(v)
  local s = assert(cjson.encode(v))
  s = s:gsub('"\\u0001mock%-empty%-array\\u0001"', "[]")
  -- lua-cjson escapes "/" as "\/"; undo it so URLs read like a real server's
  return (s:gsub("\\/", "/"))
end

local function is_null(v) return v == nil or v == null end

local ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
local function random_id(prefix, n)
  local t = {}
  for i = 1, n or 12 do
    local k = math.random(1, #ID_CHARS)
    t[i] = ID_CHARS:sub(k, k)
  end
  return (prefix or "") .. concat(t)
end

local function with_lock(dict, fn, ...)
  for _ = 1, 5000 do
    if dict:add("\0lock", true, 2) then
      local ok, a, b = pcall(fn, ...)
      dict:delete("\0lock")
      if not ok then error(a, 0) end
      return a, b
    end
    ngx.sleep(0.001)
  end
  error("mock: lock timeout")
end

-- response description: {status=, body=, headers={}}
local function json_response(status, tbl, headers)
  local h = headers or {}
  h["Content-Type"] = h["Content-Type"] or "application/json"
  return { status = status, body = encode(tbl), headers = h }
end

local function api_error(status, code, message, action)
  return json_response(status, { detail = { error_code = code, message = message, action = action } })
end

local function send(res)
  ngx.status = res.status
  for k, v in pairs(res.headers or {}) do ngx.header[k] = v end
  if res.body and res.body ~= "" then
    ngx.header["Content-Length"] = #res.body
    ngx.print(res.body)
  else
    if res.status ~= 204 and res.status ~= 304 then ngx.header["Content-Length"] = 0 end
    ngx.send_headers()
  end
  return ngx.exit(ngx.HTTP_OK)
end

local function read_body_chunks()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then
    local done = false
    return function()
      if done then return nil end
      done = true
      return data
    end
  end
  local path = ngx.req.get_body_file()
  if not path then return function() return nil end end
  local f = io.open(path, "rb")
  if not f then return function() return nil end end
  return function()
    if not f then return nil end
    local c = f:read(1024 * 1024)
    if not c then f:close(); f = nil end
    return c
  end
end

local function read_body_string(cap)
  local next_chunk = read_body_chunks()
  local t, n = {}, 0
  while true do
    local c = next_chunk()
    if not c then break end
    n = n + #c
    if not cap or n <= cap then t[#t + 1] = c end
  end
  return concat(t), n
end

---------------------------------------------------------------------------
-- config

local function get_config()
  local cfg = {}
  for k, v in pairs(DEFAULTS) do cfg[k] = v end
  local raw = ngx.shared.config:get("cfg")
  if raw then
    local stored = cjson.decode(raw) or {}
    for k, v in pairs(stored) do cfg[k] = v end
  end
  return cfg
end

local function merge_config(patch)
  return with_lock(ngx.shared.config, function()
    local raw = ngx.shared.config:get("cfg")
    local stored = raw and cjson.decode(raw) or {}
    for k, v in pairs(patch) do
      if v == null then stored[k] = nil else stored[k] = v end
    end
    ngx.shared.config:set("cfg", encode(stored))
  end)
end

---------------------------------------------------------------------------
-- the big CDN file

local BIG_BLOCK = 65521 -- a prime, so offset bugs by powers of two show up

local function big_path()
  return settings.prefix .. "/cdn/video/big.mp4"
end

-- byte at offset k (0-based) = (i*i*31 + i*7 + 13) % 256 with i = k % 65521
local function big_block()
  local t = {}
  for i = 0, BIG_BLOCK - 1 do
    t[i + 1] = string.char((i * i * 31 + i * 7 + 13) % 256)
  end
  return concat(t)
end

local function make_big(size, sparse)
  local path = big_path()
  local f = io.open(path, "rb")
  if f then
    local cur = f:seek("end")
    f:close()
    if cur == size and not sparse then return true end
  end
  local tmp = path .. ".tmp"
  f = assert(io.open(tmp, "wb"))
  if sparse then
    if size > 0 then
      f:seek("set", size - 1)
      f:write("\0")
    end
  else
    local block = big_block()
    local chunk = block:rep(16) -- ~1 MiB, a whole number of blocks
    local left = size
    while left >= #chunk do
      f:write(chunk)
      left = left - #chunk
    end
    if left > 0 then f:write(chunk:sub(1, left)) end
  end
  f:close()
  assert(os.rename(tmp, path))
  return true
end

---------------------------------------------------------------------------
-- jobs

local VALID_OUTCOMES = { complete = true, failed = true, cancelled = true, stuck = true }

local function normalize_job(opts, defaults)
  local job = {}
  for k, v in pairs(defaults or {}) do job[k] = v end
  for k, v in pairs(opts or {}) do job[k] = v end
  job.outcome = is_null(job.outcome) and "complete" or job.outcome
  if not VALID_OUTCOMES[job.outcome] then
    return nil, "outcome must be complete, failed, cancelled or stuck"
  end
  job.advance = is_null(job.advance) and "poll" or job.advance
  if job.advance ~= "poll" and job.advance ~= "time" then
    return nil, "advance must be poll or time"
  end
  job.step = tonumber(job.step) or 0.4
  if job.step <= 0 then job.step = 0.001 end
  if job.mode == nil then job.mode = "full_pipeline" end
  if not is_null(job.statuses) then
    if type(job.statuses) ~= "table" or #job.statuses == 0 then
      return nil, "statuses must be a non-empty list of strings"
    end
  else
    job.statuses = nil
  end
  if job.background_mode == "transparent" then job.transparent = true end
  job.transparent = job.transparent == true or nil
  job.error_code = is_null(job.error_code) and "CS-UORC01-009" or job.error_code
  job.error_message = is_null(job.error_message) and "Render failed: pose not detected" or job.error_message
  job.count = nil
  return job
end

local function store_job(job)
  job.created = job.created or ngx.now()
  local ok, err = ngx.shared.jobs:safe_set("job:" .. job.id, encode(job))
  if not ok then return nil, err end
  return true
end

local function load_job(id)
  local raw = ngx.shared.jobs:get("job:" .. id)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function last_stage(job)
  local last = job.statuses and (#job.statuses - 1) or 5
  if job.outcome == "stuck" and not job.statuses then last = 4 end
  return last
end

-- the stage a job is at; in poll mode advance=true moves it on after reading
local function job_stage(job, advance)
  local last = last_stage(job)
  local stage
  if job.advance == "poll" then
    local key = "stage:" .. job.id
    if advance then
      stage = ngx.shared.jobs:incr(key, 1, 0) - 1
    else
      stage = max((ngx.shared.jobs:get(key) or 0) - 1, 0)
    end
  else
    stage = floor((ngx.now() - job.created) / job.step)
  end
  return min(max(stage, 0), last)
end

local function terminal_time(job)
  local jobs = ngx.shared.jobs
  jobs:add("done:" .. job.id, ngx.now())
  return jobs:get("done:" .. job.id)
end

local function cdn_link(kind, id, cfg)
  local expires = floor(ngx.now() + (tonumber(cfg.cdn_ttl) or 3600))
  return string.format("%s/%s/%s.mp4?expires=%d", settings.cdn_base, kind, ngx.escape_uri(id), expires)
end

local function job_view(job, stage, cfg)
  local v = {
    job_id = job.id, status = null,
    mode = is_null(job.mode) and null or job.mode,
    checkpoint = null, progress_pct = null,
    cdn_url = null, mask_cdn_url = null, download_url = null,
    error = null, error_code = null, error_message = null,
    progress = null, chunks = EMPTY_ARRAY,
    created_at = iso(job.created), completed_at = null,
    x_mock = "kept",
  }
  local function complete()
    v.status = "complete"
    v.checkpoint = "render_done"
    v.progress_pct = 100
    v.progress = { completed_chunks = TOTAL_CHUNKS, total_chunks = TOTAL_CHUNKS, percent = 100 }
    v.cdn_url = cdn_link("video", job.id, cfg)
    v.download_url = v.cdn_url
    if job.transparent then v.mask_cdn_url = cdn_link("mask", job.id, cfg) end
    v.completed_at = iso(terminal_time(job))
  end
  local function failed()
    v.status = "failed"
    v.error = job.error_message
    v.error_code = job.error_code
    v.error_message = job.error_message
    v.completed_at = iso(terminal_time(job))
  end
  local function cancelled(at)
    v.status = "cancelled"
    v.completed_at = iso(at or terminal_time(job))
  end

  if job.cancelled_at then
    cancelled(job.cancelled_at)
    return v
  end
  if job.statuses then
    local n = #job.statuses
    local st = job.statuses[stage + 1]
    if st == "complete" then complete()
    elseif st == "failed" then failed()
    elseif st == "cancelled" then cancelled()
    else
      local pct = n > 1 and floor(stage * 100 / (n - 1) + 0.5) or 0
      v.status = st
      v.progress_pct = pct
      if stage > 0 then
        v.progress = { completed_chunks = min(stage - 1, TOTAL_CHUNKS), total_chunks = TOTAL_CHUNKS, percent = pct }
      end
    end
    return v
  end
  if stage < 5 then
    v.status = STAGE_STATUS[stage]
    v.checkpoint = CHECKPOINTS[stage]
    v.progress_pct = PCTS[stage]
    if stage > 0 then
      v.progress = { completed_chunks = stage - 1, total_chunks = TOTAL_CHUNKS, percent = PCTS[stage] }
    end
    return v
  end
  if job.outcome == "failed" then failed()
  elseif job.outcome == "cancelled" then cancelled()
  else complete() end
  return v
end

local function job_finished(job, cfg)
  if job.cancelled_at then return "cancelled" end
  local v = job_view(job, job_stage(job, false), cfg)
  if v.status == "complete" or v.status == "failed" or v.status == "cancelled" then
    return v.status
  end
  return nil
end

---------------------------------------------------------------------------
-- faults

local function add_fault(f)
  return with_lock(ngx.shared.faults, function()
    local raw = ngx.shared.faults:get("list")
    local list = raw and cjson.decode(raw) or {}
    list[#list + 1] = f
    ngx.shared.faults:set("list", encode(list))
    return #list
  end)
end

local function fault_matches(f, method, uri)
  if not is_null(f.method) and tostring(f.method):upper() ~= method then return false end
  local m = f.match
  if type(m) ~= "string" then return false end
  if m:sub(-1) == "*" then
    return uri:sub(1, #m - 1) == m:sub(1, -2)
  end
  return uri == m
end

-- takes (consumes one use of) the first fault matching this request
local function take_fault(method, uri)
  if not ngx.shared.faults:get("list") then return nil end
  return with_lock(ngx.shared.faults, function()
    local raw = ngx.shared.faults:get("list")
    local list = raw and cjson.decode(raw) or {}
    for i, f in ipairs(list) do
      if fault_matches(f, method, uri) then
        local times = tonumber(f.times) or 1
        if times > 0 then
          times = times - 1
          if times == 0 then
            table.remove(list, i)
          else
            f.times = times
          end
        end
        f.used = (f.used or 0) + 1
        if #list == 0 then
          ngx.shared.faults:delete("list")
        else
          ngx.shared.faults:set("list", encode(list))
        end
        return f
      end
    end
    return nil
  end)
end

local REASONS = {
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [408] = "Request Timeout", [409] = "Conflict", [413] = "Payload Too Large",
  [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

local function html_page(status)
  local title = status .. " " .. (REASONS[status] or "Error")
  return "<html>\r\n<head><title>" .. title .. "</title></head>\r\n<body>\r\n<center><h1>" .. title ..
    "</h1></center>\r\n<hr><center>mock-proxy</center>\r\n</body>\r\n</html>\r\n"
end

-- `text` with `pad` bytes of "X-Pad-N: xxx" header lines (`line` bytes each,
-- default 8000) after its first line
local function pad_lines(text, pad, line)
  if pad <= 0 then return text end
  local first, rest = text:match("^(.-\r\n)(.*)$")
  line = max(tonumber(line) or 8000, 16)
  local out, n = { first or "" }, 0
  while pad > 0 do
    n = n + 1
    local name = "X-Pad-" .. n .. ": "
    local len = max(min(line, pad) - #name - 2, 1)
    out[#out + 1] = name .. string.rep("x", len) .. "\r\n"
    pad = pad - (#name + len + 2)
  end
  out[#out + 1] = rest or text
  return concat(out)
end

-- The body a fault gives: `body_base64` (any bytes) or `body`, with every
-- "%KEY%" replaced by the key of the request's Authorization header (a
-- server that echoes the key back), or nil when the fault has none.
local function fault_body(f)
  local body
  if not is_null(f.body_base64) then body = ngx.decode_base64(tostring(f.body_base64))
  elseif not is_null(f.body) then body = tostring(f.body) end
  if body and body:find("%KEY%", 1, true) then
    local key = (ngx.var.http_authorization or ""):match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)") or ""
    body = body:gsub("%%KEY%%", function() return key end)
  end
  return body
end

-- kind "raw": these bytes as the whole answer (status line and headers
-- included: `response`, or `text`/`text_base64`), then the close. `pad`
-- bytes of "X-Pad-N: xxx" header lines (`pad_line` bytes each, default 8000)
-- after its first line; or `pad_header` bytes of one more header line at its
-- end, then `after`.
local function send_raw(f)
  ngx.req.read_body() -- all of it: the client is not cut off while still sending
  local sock = assert(ngx.req.socket(true))
  local text
  if is_null(f.response) then text = fault_body({ body = f.text, body_base64 = f.text_base64 })
  else text = tostring(f.response) end
  text = pad_lines(text or "HTTP/1.1 200 OK\r\n\r\n", tonumber(f.pad) or 0, f.pad_line)
  local pad = tonumber(f.pad_header)
  if pad then text = text .. "X-Pad: " .. string.rep("a", pad) .. "\r\n" .. (is_null(f.after) and "" or f.after) end
  sock:send(text)
  return ngx.exit(444)
end

-- answers a fault that does not need the normal answer; returns true if it answered
local function fault_immediate(f)
  local kind = f.kind
  if kind == "raw" then
    return send_raw(f)
  elseif kind == "drop" then
    return ngx.exit(444)
  elseif kind == "status" then
    local status = tonumber(f.status) or 500
    local headers = {}
    if not is_null(f.retry_after) then headers["Retry-After"] = tostring(f.retry_after) end
    if not is_null(f.retry_after_date) then
      headers["Retry-After"] = ngx.http_time(ngx.time() + (tonumber(f.retry_after_date) or 0))
    end
    if type(f.headers) == "table" then
      for k, v in pairs(f.headers) do headers[k] = tostring(v) end
    end
    if not is_null(f.location) then headers["Location"] = tostring(f.location) end
    local body = fault_body(f)
    if body then
      headers["Content-Type"] = is_null(f.content_type) and "application/json" or f.content_type
    else
      body = encode({ detail = REASONS[status] or ("HTTP " .. status) })
      headers["Content-Type"] = "application/json"
    end
    send({ status = status, body = body, headers = headers })
    return true
  elseif kind == "malformed" then
    send({ status = 200, body = fault_body(f) or '{"job_id": "x", "status": ',
      headers = { ["Content-Type"] = "application/json" } })
    return true
  elseif kind == "html" then
    local status = tonumber(f.status) or 502
    send({ status = status, body = html_page(status), headers = { ["Content-Type"] = "text/html" } })
    return true
  end
  return false
end

-- sends a string as body with a claimed Content-Length, then closes the connection
local function send_truncated(status, headers, produce, total, sent)
  ngx.status = status
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.header["Content-Length"] = total
  produce(sent)
  ngx.flush(true)
  return ngx.exit(444)
end

-- answers a fault that wraps the normal answer `res`
local function fault_wrap(f, res)
  local kind = f.kind
  if kind == "truncated" then
    local body = res.body or ""
    local total = max(tonumber(f.length) or #body, 1)
    local sent = tonumber(f.sent) or floor(#body / 2)
    sent = min(sent, total - 1, #body)
    return send_truncated(res.status, res.headers, function(n) ngx.print(body:sub(1, n)) end, total, sent)
  elseif kind == "stall" then
    local body = res.body or ""
    local sent = min(tonumber(f.sent) or floor(#body / 2), #body)
    ngx.status = res.status
    for k, v in pairs(res.headers or {}) do ngx.header[k] = v end
    ngx.header["Content-Length"] = #body
    ngx.print(body:sub(1, sent))
    ngx.flush(true)
    ngx.sleep(tonumber(f.delay) or 5)
    ngx.print(body:sub(sent + 1))
    return ngx.exit(ngx.HTTP_OK)
  elseif kind == "fields" then
    -- the real JSON answer with the fields of `set` replaced by raw JSON
    -- text ("1e400", "NaN", "{}", "\"%KEY%\"", ...), each put in as given
    local v = type(res.body) == "string" and cjson.decode(res.body)
    if type(v) ~= "table" or type(f.set) ~= "table" then return send(res) end
    local raw, n = {}, 0
    for name, text in pairs(f.set) do
      n = n + 1
      v[name] = "\1mock-raw-" .. n .. "\1"
      raw[n] = fault_body({ body = text })
    end
    if type(v.chunks) == "table" and next(v.chunks) == nil then v.chunks = EMPTY_ARRAY end
    local body = encode(v):gsub('"\\u0001mock%-raw%-(%d+)\\u0001"', function(i) return raw[tonumber(i)] end)
    res.body = body
    return send(res)
  elseif kind == "huge" then
    local body = res.body or "{}"
    if body:sub(1, 1) ~= "{" then body = "{}" end
    local size = tonumber(f.size) or 10 * 1024 * 1024
    local head = '{"x_padding":"'
    local tail = (body == "{}" or body:match("^{%s*}$")) and '"}' or ('",' .. body:sub(2))
    local pad = max(size - #head - #tail, 0)
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #head + pad + #tail
    ngx.print(head)
    local chunk = string.rep("x", 1024 * 1024)
    while pad > 0 do
      local n = min(pad, #chunk)
      ngx.print(n == #chunk and chunk or chunk:sub(1, n))
      pad = pad - n
      local ok = ngx.flush(true)
      if not ok then return ngx.exit(444) end
    end
    ngx.print(tail)
    return ngx.exit(ngx.HTTP_OK)
  end
  return send(res)
end

---------------------------------------------------------------------------
-- request log

local function header_table()
  local h = {}
  local raw = ngx.req.get_headers(200, true)
  for k, v in pairs(raw) do
    if type(v) == "table" then v = concat(v, ", ") end
    h[k:lower()] = v
  end
  return h
end

function M.log_request(server)
  local ctx = ngx.ctx
  local uri = ngx.var.mock_uri or ngx.var.uri
  if server == "api" and uri:sub(1, 5) ~= "/api/" and uri ~= "/api" then return end
  ngx.update_time()
  local entry = {
    t = ngx.req.start_time(),
    t_end = ngx.now(),
    method = ngx.req.get_method(),
    uri = uri,
    request_uri = ngx.var.request_uri,
    args = ngx.var.args or null,
    headers = header_table(),
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    server = server,
    status = tonumber(ngx.var.status),
    bytes_sent = tonumber(ngx.var.bytes_sent),
    body_bytes_sent = tonumber(ngx.var.body_bytes_sent),
    request_length = tonumber(ngx.var.request_length),
    form = ctx.form,
    parts = ctx.parts,
    body = ctx.body,
    form_error = ctx.form_error,
    fault = ctx.fault,
    job_id = ctx.job_id,
  }
  local logd = ngx.shared.log
  local seq = logd:incr("seq", 1, 0)
  entry.seq = seq
  local ok = logd:safe_set("r:" .. seq, encode(entry))
  if not ok then logd:incr("dropped", 1, 0) end
end

---------------------------------------------------------------------------
-- auth

local function bearer()
  local h = ngx.var.http_authorization
  if not h then return nil end
  local key = h:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  return key
end

-- returns nil if ok, else a response; `key` of the caller
local function check_auth(cfg)
  local key = bearer()
  if not key then
    return json_response(401, {
      detail = "CS-UORC01-006: API key missing. Send the header 'Authorization: Bearer <your key>'.",
    }, { ["WWW-Authenticate"] = "Bearer" })
  end
  if key == "sk-test-expired" then
    return api_error(401, "CS-UORC01-007", "API key expired", "Create a new API key in the dashboard"), key
  end
  if key == "sk-test-broke" then return nil, key end
  for _, k in ipairs(cfg.keys or {}) do
    if k == key then return nil, key end
  end
  return api_error(401, "CS-UORC01-007", "Invalid API key", "Check the key or create a new one in the dashboard"), key
end

---------------------------------------------------------------------------
-- /api handlers

local function not_found_job()
  return json_response(404, { detail = "Job not found" })
end

local function render_status(id, cfg)
  local job = load_job(id)
  if not job then return not_found_job() end
  ngx.ctx.job_id = id
  local stage = job_stage(job, true)
  return json_response(200, job_view(job, stage, cfg))
end

local function render_cancel(id, cfg)
  local job = load_job(id)
  if not job then return not_found_job() end
  ngx.ctx.job_id = id
  local done = job_finished(job, cfg)
  if done == "complete" or done == "failed" then
    return json_response(409, { detail = "Job already " .. done .. "; it cannot be cancelled" })
  end
  if not job.cancelled_at then
    job.cancelled_at = ngx.now()
    store_job(job)
  end
  if cfg.cancel_empty then
    return { status = 204, body = "", headers = {} }
  end
  return json_response(200, { success = true, job_id = id, status = "cancelled" })
end

local MODELS = { V4_Preview = true, V3_Preview = true }
local BG_MODES = { original = true, solid = true, transparent = true, inpaint = true }

---------------------------------------------------------------------------
-- characters and scenes (assets)
-- One record per asset in the jobs dict ("asset:<kind>:<id>"), the ids of
-- each kind in creation order ("assets:<kind>", for the list), a deleted id
-- remembered ("gone:<kind>:<id>") so a render that names it is refused.
-- An asset moves pending -> processing (characters; scenes stay pending)
-- -> its outcome (ready, failed; stuck stays where it is).

local ASSET_KINDS = {
  characters = { prefix = "char_", key = "character_id", noun = "Character", middle = "processing",
    error_code = "CS-UORC01-009", error_message = "Preprocessing failed: no person detected", credits = 1 },
  scenes = { prefix = "scene_", key = "scene_id", noun = "Scene", middle = "pending",
    error_message = "Preprocessing failed: no motion detected", credits = 2 },
}
local ASSET_OUTCOMES = { ready = true, failed = true, stuck = true }

local function uuid()
  local h = random_id("", 32)
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21)
end

local function load_asset(kind, id)
  local raw = ngx.shared.jobs:get("asset:" .. kind .. ":" .. id)
  return raw and cjson.decode(raw)
end

-- makes an asset record from options (control or API); nil, err for bad options
local function new_asset(kind, o, defaults)
  local a = {}
  for k, v in pairs(defaults or {}) do a[k] = v end
  for k, v in pairs(o or {}) do if v ~= null then a[k] = v end end
  a.kind = kind
  a.id = a.id or random_id(ASSET_KINDS[kind].prefix, 12)
  a.name = a.name or a.id
  a.outcome = a.outcome or "ready"
  if not ASSET_OUTCOMES[a.outcome] then return nil, "outcome must be ready, failed or stuck" end
  a.advance = a.advance or "poll"
  if a.advance ~= "poll" and a.advance ~= "time" then return nil, "advance must be poll or time" end
  a.step = tonumber(a.step) or 0.4
  a.job_id = a.job_id or random_id("job_", 16)
  a.created = ngx.now()
  local ok, err = ngx.shared.jobs:safe_set("asset:" .. kind .. ":" .. a.id, encode(a))
  if not ok then return nil, err end
  with_lock(ngx.shared.jobs, function()
    local raw = ngx.shared.jobs:get("assets:" .. kind)
    local ids = raw and cjson.decode(raw) or {}
    ids[#ids + 1] = a.id
    ngx.shared.jobs:set("assets:" .. kind, encode(ids))
  end)
  return a
end

-- 0, 1, 2 (the outcome); in poll mode advance=true moves it on after reading
local function asset_stage(a, advance)
  local stage
  if a.advance == "poll" then
    local key = "astage:" .. a.kind .. ":" .. a.id
    if advance then stage = ngx.shared.jobs:incr(key, 1, 0) - 1
    else stage = max((ngx.shared.jobs:get(key) or 0) - 1, 0) end
  else
    stage = floor((ngx.now() - a.created) / a.step)
  end
  return min(max(stage, 0), a.outcome == "stuck" and 1 or 2)
end

local function asset_view(a, stage)
  local k = ASSET_KINDS[a.kind]
  local v = {
    id = a.id, name = a.name, status = stage == 0 and "pending" or k.middle, job_id = a.job_id,
    error_message = null, credits_used = k.credits, created_at = iso(a.created), completed_at = null,
  }
  if a.kind == "characters" then
    v.error, v.thumbnail_url = null, null
  else
    -- the length is known once preprocessing has begun (duration: seconds, default 1.5)
    local duration = stage > 0 and (tonumber(a.duration) or 1.5) or null
    v.duration_seconds, v.fps, v.width, v.height = duration, 24, 64, 64
    v.total_frames = duration ~= null and floor(duration * 24) or null
    v.model = a.model or "V4_Preview"
    if a.segments then v.segments = a.segments end
  end
  if stage == 2 then
    v.status = a.outcome
    ngx.shared.jobs:add("adone:" .. a.kind .. ":" .. a.id, ngx.now())
    v.completed_at = iso(ngx.shared.jobs:get("adone:" .. a.kind .. ":" .. a.id))
    if a.outcome == "failed" then
      v.error_message = a.error_message or k.error_message
      if a.kind == "characters" then v.error = a.error_code or k.error_code end
    elseif a.kind == "characters" then
      v.thumbnail_url = settings.cdn_base .. "/thumb/" .. a.id .. ".png"
    end
  end
  return v
end

-- A render that names an asset the mock made: refused unless it is ready.
-- Ids the mock never made pass (the magic ids above aside).
local function render_asset_error(kind, id)
  local k = ASSET_KINDS[kind]
  if ngx.shared.jobs:get("gone:" .. kind .. ":" .. id) then
    return kind == "characters"
      and api_error(400, "CS-ORIV-008", "Character not found: " .. id, "Check the character id")
      or api_error(400, "CS-ORIV-009", "Scene not found: " .. id, "Check the scene id")
  end
  local a = load_asset(kind, id)
  if not a then return nil end
  if asset_view(a, asset_stage(a, false)).status == "ready" then return nil end
  if kind == "scenes" then
    return api_error(400, "CS-ORIV-010", "Scene not ready: " .. id, "Wait until the scene is ready")
  end
  return api_error(400, "CS-UORC01-002", "Validation failed: " .. k.noun:lower() .. " not ready: " .. id,
    "Wait until the character is ready")
end

local function render_assets_error(character_id, scene_id, mapping_text)
  local res = character_id and render_asset_error("characters", character_id)
  res = res or (scene_id and render_asset_error("scenes", scene_id))
  local m = not res and mapping_text and cjson.decode(mapping_text)
  if type(m) == "table" then
    for _, char in pairs(m) do
      res = res or render_asset_error("characters", char)
    end
  end
  return res
end

local function charge(n)
  ngx.shared.jobs:incr("credits_used", n, 0)
end


local function form_record(parts)
  local form = {}
  local list = {}
  for _, p in ipairs(parts) do
    local rec
    if p.filename then
      rec = { filename = p.filename, content_type = p.content_type or null, size = p.size, md5 = p.md5 or null }
    else
      rec = { value = p.value, size = p.size, truncated = p.truncated }
      if p.content_type then rec.content_type = p.content_type end
    end
    if p.name and form[p.name] == nil then form[p.name] = rec end
    local item = { name = p.name or null }
    for k, v in pairs(rec) do item[k] = v end
    list[#list + 1] = item
  end
  return form, list
end

local function read_form()
  local ct = ngx.var.content_type
  local boundary = multipart.boundary(ct)
  if boundary then
    local parts, err = multipart.parse(boundary, read_body_chunks())
    if not parts then
      ngx.ctx.form_error = err
      return nil, err
    end
    local form, list = form_record(parts)
    ngx.ctx.form, ngx.ctx.parts = form, list
    return form
  end
  if ct and ct:lower():find("^%s*application/x%-www%-form%-urlencoded") then
    ngx.req.read_body()
    local args = ngx.req.get_post_args(1000) or {}
    local form = {}
    for k, v in pairs(args) do
      if type(v) == "table" then v = v[1] end
      if v == true then v = "" end
      form[k] = { value = v, size = #v }
    end
    ngx.ctx.form = form
    return form
  end
  local body = read_body_string(64 * 1024)
  ngx.ctx.body = body
  return nil, "expected multipart/form-data (got " .. tostring(ct) .. ")"
end

local function field(form, name)
  local r = form[name]
  if not r then return nil end
  if r.filename then return r end
  if r.value == "" then return nil end
  return r.value
end

local function render_create(cfg, key)
  local form, err = read_form()
  if not form then
    return api_error(400, "CS-UORC01-002", "Validation failed: " .. err, "Send the fields as multipart/form-data")
  end
  local ref_image = form.ref_image and form.ref_image.filename and form.ref_image
  local driving = form.driving_video and form.driving_video.filename and form.driving_video
  local ref_url, drv_url = field(form, "ref_image_url"), field(form, "driving_video_url")
  local character_id, scene_id = field(form, "character_id"), field(form, "scene_id")
  local mapping_text = field(form, "character_mapping")
  local model = field(form, "model") or "V4_Preview"
  local bg = field(form, "background_mode") or "original"
  local bg_color = field(form, "bg_color")
  local fast = field(form, "fast")

  if type(model) ~= "string" or not MODELS[model] then
    return api_error(400, "CS-UORC01-002", "Validation failed: model must be V4_Preview or V3_Preview",
      "Use model=V4_Preview or model=V3_Preview")
  end
  if type(bg) ~= "string" or not BG_MODES[bg] then
    return api_error(400, "CS-ORIV-011", "Invalid background_mode: " .. tostring(bg),
      "Use original, solid, transparent or inpaint")
  end
  if bg_color ~= nil then
    local ok = type(bg_color) == "string" and bg_color:match("^%s*(%d+)%s*,%s*(%d+)%s*,%s*(%d+)%s*$")
    if ok then
      for c in bg_color:gmatch("%d+") do
        if tonumber(c) > 255 then ok = false end
      end
    end
    if not ok then
      return api_error(400, "CS-UORC01-002", "Validation failed: bg_color must be \"R,G,B\" with 0-255 values",
        "Send bg_color like 0,255,0")
    end
  end
  local is_fast = false
  if fast ~= nil then
    local f = type(fast) == "string" and fast:lower() or ""
    if f == "true" or f == "1" then is_fast = true
    elseif f == "false" or f == "0" then is_fast = false
    else
      return api_error(400, "CS-UORC01-002", "Validation failed: fast must be true or false", "Send fast=true or fast=false")
    end
  end
  if mapping_text ~= nil then
    local m = type(mapping_text) == "string" and cjson.decode(mapping_text)
    local ok = type(m) == "table" and #m == 0
    if ok then
      for k, v in pairs(m) do
        if type(k) ~= "string" or type(v) ~= "string" then ok = false end
      end
      if next(m) == nil and mapping_text:match("^%s*%[") then ok = false end
    end
    if not ok then
      return api_error(400, "CS-ORIV-012", "Invalid character_mapping: expected a JSON object of segment uuid to character id",
        "Send character_mapping like {\"<segment uuid>\": \"<character id>\"}")
    end
  end
  if not (ref_image or ref_url or character_id or mapping_text) then
    return api_error(400, "CS-ORIV-001", "Reference image missing",
      "Provide ref_image, ref_image_url, character_id or character_mapping")
  end
  if not (driving or drv_url or scene_id) then
    return api_error(400, "CS-ORIV-002", "Driving video or scene missing",
      "Provide driving_video, driving_video_url or scene_id")
  end
  if character_id == "char_missing" then
    return api_error(400, "CS-ORIV-008", "Character not found: " .. character_id, "Check the character id")
  end
  if scene_id == "scene_missing" then
    return api_error(400, "CS-ORIV-009", "Scene not found: " .. scene_id, "Check the scene id")
  end
  if scene_id == "scene_pending" then
    return api_error(400, "CS-ORIV-010", "Scene not ready: " .. scene_id, "Wait until the scene is ready")
  end
  local asset_err = render_assets_error(character_id, scene_id, mapping_text)
  if asset_err then return asset_err end
  if is_fast and cfg.fast_busy then
    return api_error(400, "CS-UORC01-001", "Fast mode has no capacity right now", "Retry later or render without fast")
  end
  if key == "sk-test-broke" then
    return api_error(402, "CS-UORC01-008", "Insufficient credits", "Buy more credits")
  end
  -- config.renders_left = N: the account runs out of credits after N renders
  local left = tonumber(cfg.renders_left)
  if left and (ngx.shared.posts:get("\0made") or 0) >= left then
    return api_error(402, "CS-UORC01-008", "Insufficient credits", "Buy more credits")
  end

  local mode = is_fast and "fast" or ((character_id or scene_id or mapping_text) and "preprocessed" or "full_pipeline")
  local defaults = {}
  for k, v in pairs(type(cfg.render_job) == "table" and cfg.render_job or {}) do defaults[k] = v end
  if defaults.advance == nil then defaults.advance = "time" end
  local job, jerr = normalize_job({
    id = random_id("job_", 16),
    mode = mode,
    transparent = (bg == "transparent") or nil,
    background_mode = bg,
    model = model,
    source = "api",
  }, defaults)
  if not job then
    return json_response(500, { detail = "mock render_job config invalid: " .. jerr })
  end
  job.created = ngx.now()
  store_job(job)
  ngx.ctx.job_id = job.id
  -- renders made per uploaded content (GET /_mock/posts): a batch must not pay twice
  local posts = ngx.shared.posts
  posts:incr("\0made", 1, 0)
  local upload = driving or ref_image
  posts:incr(upload and upload.md5 or ("fields:" .. tostring(scene_id or drv_url or character_id)), 1, 0)
  return json_response(200, { job_id = job.id, status = "queued", mode = mode, enqueued_at = iso(job.created) })
end

local function credits(key, cfg)
  local broke = key == "sk-test-broke"
  local used = ngx.shared.jobs:get("credits_used") or 0 -- what assets were charged
  return json_response(200, {
    balance = broke and 0 or (tonumber(cfg.balance) or 100) - used,
    total_purchased = 120,
    total_used = broke and 120 or 20 + used,
    updated_at = iso(ngx.now()),
  })
end

local function method_not_allowed(allow)
  return json_response(405, { detail = "Method Not Allowed" }, { Allow = allow })
end

-- every asset answer: as is, or inside {"data": ...} with config.asset_wrap
local function asset_answer(cfg, status, tbl)
  if cfg.asset_wrap then tbl = { data = tbl } end
  return json_response(status, tbl)
end

local function validation(msg)
  return api_error(400, "CS-UORC01-002", "Validation failed: " .. msg, "Fix the request and send it again")
end

local function asset_preprocess(kind, cfg, key)
  local form, err = read_form()
  if not form then return validation(err) end
  local name = field(form, "name")
  if type(name) ~= "string" then return validation("name is required") end
  local fname, uname = "image", "image_url"
  if kind == "scenes" then fname, uname = "video", "video_url" end
  local file = form[fname] and form[fname].filename and form[fname]
  local url = field(form, uname)
  if not file and not url then
    return kind == "characters"
      and api_error(400, "CS-ORIV-001", "Reference image missing", "Provide image or image_url")
      or api_error(400, "CS-ORIV-002", "Driving video missing", "Provide video or video_url")
  end
  if file and url then return validation("give " .. fname .. " or " .. uname .. ", not both") end
  if url and (type(url) ~= "string" or not url:match("^https?://")) then return validation(uname .. " must be an http(s) URL") end
  local model, bg = field(form, "model"), field(form, "background_mode")
  if kind == "scenes" then
    if model ~= nil and not MODELS[model] then return validation("model must be V4_Preview or V3_Preview") end
    if bg ~= nil and not BG_MODES[bg] then
      return api_error(400, "CS-ORIV-011", "Invalid background_mode: " .. tostring(bg),
        "Use original, solid, transparent or inpaint")
    end
  end
  if key == "sk-test-broke" then return api_error(402, "CS-UORC01-008", "Insufficient credits", "Buy more credits") end
  local defaults = { advance = "time", step = 0.4 }
  for k, v in pairs(type(cfg.asset_job) == "table" and cfg.asset_job or {}) do defaults[k] = v end
  local a, aerr = new_asset(kind, { name = name, model = model, background_mode = bg }, defaults)
  if not a then return json_response(500, { detail = "mock asset_job config invalid: " .. aerr }) end
  charge(ASSET_KINDS[kind].credits)
  return asset_answer(cfg, 200, { [ASSET_KINDS[kind].key] = a.id, job_id = a.job_id, status = "pending",
    enqueued_at = iso(a.created) })
end

local function scene_import(cfg, key)
  local ct = ngx.var.content_type or ""
  local body = read_body_string(64 * 1024)
  ngx.ctx.body = body
  if not ct:lower():find("^%s*application/json") then return validation("expected application/json (got " .. ct .. ")") end
  local o = cjson.decode(body)
  if type(o) ~= "table" then return validation("the body is not a JSON object") end
  for _, k in ipairs({ "template_id", "name" }) do
    if type(o[k]) ~= "string" or o[k] == "" then return validation(k .. " is required") end
  end
  if o.template_id == "tpl_missing" then return json_response(404, { detail = "Template not found" }) end
  if key == "sk-test-broke" then return api_error(402, "CS-UORC01-008", "Insufficient credits", "Buy more credits") end
  local defaults = { advance = "time", step = 0.4 }
  for k, v in pairs(type(cfg.asset_job) == "table" and cfg.asset_job or {}) do defaults[k] = v end
  local segments = { { uuid = uuid(), type = "character" }, { uuid = uuid(), type = "character" } }
  local a, aerr = new_asset("scenes", { name = o.name, template_id = o.template_id, segments = segments }, defaults)
  if not a then return json_response(500, { detail = "mock asset_job config invalid: " .. aerr }) end
  charge(3)
  return asset_answer(cfg, 200, { id = a.id, status = "pending", credits_reserved = 3, segments = segments })
end

local function asset_list(kind, cfg)
  local args = ngx.req.get_uri_args()
  local function whole(name, default, lo, hi)
    local v = args[name]
    if v == nil then return default end
    local n = type(v) == "string" and v:match("^%d+$") and tonumber(v)
    if not n or n < lo or (hi and n > hi) then return nil end
    return n
  end
  local limit = whole("limit", 20, 1, 100)
  if not limit then return validation("limit must be between 1 and 100") end
  local offset = whole("offset", 0, 0)
  if not offset then return validation("offset must be 0 or more") end
  local raw = ngx.shared.jobs:get("assets:" .. kind)
  local ids = raw and cjson.decode(raw) or {}
  local items = {}
  for i = offset + 1, min(offset + limit, #ids) do
    local a = load_asset(kind, ids[i])
    if a then items[#items + 1] = asset_view(a, asset_stage(a, false)) end
  end
  if #items == 0 then items = EMPTY_ARRAY end
  return asset_answer(cfg, 200, { [kind] = items, total = #ids })
end

local function asset_delete(kind, a, cfg)
  local jobs = ngx.shared.jobs
  jobs:delete("asset:" .. kind .. ":" .. a.id)
  jobs:set("gone:" .. kind .. ":" .. a.id, true)
  with_lock(jobs, function()
    local ids = cjson.decode(jobs:get("assets:" .. kind) or "[]") or {}
    for i, id in ipairs(ids) do
      if id == a.id then table.remove(ids, i) break end
    end
    jobs:set("assets:" .. kind, encode(ids))
  end)
  return asset_answer(cfg, 200, { success = true })
end

local function route_assets(method, uri, cfg)
  local kind, rest = uri:match("^/api/(%a+)/?(.*)$")
  if not ASSET_KINDS[kind] then return nil end
  local res, key = check_auth(cfg)
  if res then return res end
  if rest == "" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET") end
    return asset_list(kind, cfg)
  end
  if rest == "preprocess" then
    if method ~= "POST" then return method_not_allowed("POST") end
    return asset_preprocess(kind, cfg, key)
  end
  if kind == "scenes" and rest == "import" then
    if method ~= "POST" then return method_not_allowed("POST") end
    return scene_import(cfg, key)
  end
  if rest:find("/", 1, true) then return json_response(404, { detail = "Not Found" }) end
  local a = load_asset(kind, rest)
  if not a then return json_response(404, { detail = ASSET_KINDS[kind].noun .. " not found" }) end
  if method == "GET" or method == "HEAD" then
    return asset_answer(cfg, 200, asset_view(a, asset_stage(a, true)))
  elseif method == "DELETE" then
    return asset_delete(kind, a, cfg)
  end
  return method_not_allowed("GET, DELETE")
end

local function route_api(method, uri, cfg)
  local assets = route_assets(method, uri, cfg)
  if assets then return assets end
  if uri == "/api/render" or uri == "/api/render/" then
    if method ~= "POST" then return method_not_allowed("POST") end
    local res, key = check_auth(cfg)
    if res then return res end
    return render_create(cfg, key)
  end
  local id = uri:match("^/api/render/([^/]+)$")
  if id then
    if method == "GET" or method == "HEAD" then
      -- no key needed; a present but invalid key is ignored (documented choice)
      return render_status(id, cfg)
    elseif method == "DELETE" then
      local res = check_auth(cfg)
      if res then return res end
      return render_cancel(id, cfg)
    end
    return method_not_allowed("GET, DELETE")
  end
  if uri == "/api/credits" then
    if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET") end
    local res, key = check_auth(cfg)
    if res then return res end
    return credits(key, cfg)
  end
  return json_response(404, { detail = "Not Found" })
end

function M.api()
  ngx.update_time()
  local method = ngx.req.get_method()
  local uri = ngx.var.uri
  local cfg = get_config()
  local fault = take_fault(method, uri)
  if fault then ngx.ctx.fault = fault.kind end
  local delay = tonumber(cfg.delay) or 0
  if delay > 0 then ngx.sleep(delay) end
  if fault then
    if not is_null(fault.delay) and fault.kind ~= "stall" then ngx.sleep(tonumber(fault.delay) or 0) end
    if fault.kind == "throttle" then ngx.var.limit_rate = tonumber(fault.rate) or 1024 end
    if fault_immediate(fault) then return end
  end
  ngx.update_time()
  local res = route_api(method, uri, cfg)
  if fault then return fault_wrap(fault, res) end
  return send(res)
end

---------------------------------------------------------------------------
-- CDN

local function cdn_file(uri)
  if uri == "/video/big.mp4" then return big_path() end
  if uri:match("^/video/[^/]+%.mp4$") then return settings.mock_dir .. "/files/demo.mp4" end
  if uri:match("^/mask/[^/]+%.mp4$") then return settings.mock_dir .. "/files/mask.mp4" end
  return nil
end

-- the ETag and Last-Modified nginx gives a static file (so that a resume of
-- a cut answer validates against the real file, as with a real CDN)
local function file_validators(path)
  local p = io.popen("stat -c '%Y %s' '" .. path:gsub("'", "'\\''") .. "'")
  local out = p and p:read("*a") or ""
  if p then p:close() end
  local mtime, size = out:match("^(%d+) (%d+)")
  if not mtime then return {} end
  mtime, size = tonumber(mtime), tonumber(size)
  return { ["ETag"] = string.format('"%x-%x"', mtime, size), ["Last-Modified"] = ngx.http_time(mtime) }
end

-- faults that need the file: truncated / stall stream part of it from Lua
local function cdn_partial(f, path)
  local fh = path and io.open(path, "rb")
  if not fh then return send(json_response(404, { detail = "Not Found" })) end
  local size = fh:seek("end")
  fh:seek("set", 0)
  local sent = min(tonumber(f.sent) or floor(size / 2), size)
  local function pump(n)
    while n > 0 do
      local c = fh:read(min(n, 1024 * 1024))
      if not c then break end
      ngx.print(c)
      n = n - #c
      if not ngx.flush(true) then break end
    end
  end
  local headers = file_validators(path)
  headers["Content-Type"], headers["Accept-Ranges"] = "video/mp4", "bytes"
  if f.kind == "truncated" then
    local total = max(tonumber(f.length) or size, sent + 1)
    ngx.status = 200
    for k, v in pairs(headers) do ngx.header[k] = v end
    ngx.header["Content-Length"] = total
    pump(sent)
    fh:close()
    ngx.flush(true)
    return ngx.exit(444)
  end
  ngx.status = 200
  for k, v in pairs(headers) do ngx.header[k] = v end
  ngx.header["Content-Length"] = size
  pump(sent)
  ngx.sleep(tonumber(f.delay) or 5)
  pump(size - sent)
  fh:close()
  return ngx.exit(ngx.HTTP_OK)
end

function M.cdn_access()
  ngx.update_time()
  local method = ngx.req.get_method()
  local uri = ngx.var.mock_uri or ngx.var.uri
  local cfg = get_config()
  local fault = take_fault(method, uri)
  if fault then ngx.ctx.fault = fault.kind end
  local delay = tonumber(cfg.cdn_delay) or 0
  if delay > 0 then ngx.sleep(delay) end
  if fault then
    if not is_null(fault.delay) and fault.kind ~= "stall" then ngx.sleep(tonumber(fault.delay) or 0) end
    if fault.kind == "throttle" then ngx.var.limit_rate = tonumber(fault.rate) or 1024 end
    if fault_immediate(fault) then return end
  end
  -- signed links: an expires=<epoch seconds> in the past (or not a number) is refused
  local expires = ngx.var.arg_expires
  if expires then
    local e = tonumber(expires)
    if not e or e < ngx.time() then
      return send({ status = 403, headers = { ["Content-Type"] = "application/xml" },
        body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>" ..
          "<Message>Request has expired</Message></Error>\n" })
    end
  end
  if fault then
    if fault.kind == "truncated" or fault.kind == "stall" then
      return cdn_partial(fault, cdn_file(uri))
    end
    if fault.kind == "huge" then
      return fault_wrap(fault, json_response(200, {}))
    end
    -- slow and throttle: go on to the static file
  end
end

function M.cdn_not_found()
  return send(json_response(404, { detail = "Not Found" }))
end

---------------------------------------------------------------------------
-- /_mock control endpoints

local function read_json()
  local body = read_body_string()
  if body == "" then return {} end
  local v, err = cjson.decode(body)
  if type(v) ~= "table" then return nil, "body is not a JSON object: " .. tostring(err) end
  return v
end

local function bad(msg)
  return json_response(400, { error = msg })
end

local function control_jobs(opts)
  local count = tonumber(opts.count)
  local ids = {}
  local n = count or 1
  if n < 0 or n > 1000000 then return bad("count out of range") end
  local now = ngx.now()
  for i = 1, n do
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    if is_null(opts.id) then
      o.id = random_id("job_", 16)
    elseif count then
      o.id = opts.id .. "-" .. i
    end
    o.source = "control"
    local job, err = normalize_job(o)
    if not job then return bad(err) end
    job.created = now
    local ok, serr = store_job(job)
    if not ok then return json_response(507, { error = "jobs dict full: " .. tostring(serr), ids = ids }) end
    ids[i] = job.id
  end
  if #ids == 0 then ids = EMPTY_ARRAY end
  return json_response(200, { ids = ids })
end

local function control_log(args)
  local logd = ngx.shared.log
  local last = logd:get("seq") or 0
  local since = tonumber(args.since) or 0
  local limit = tonumber(args.limit)
  local out = {}
  for seq = since + 1, last do
    local raw = logd:get("r:" .. seq)
    if raw then out[#out + 1] = raw end
    if limit and #out >= limit then break end
  end
  local body = '{"requests":[' .. concat(out, ",") .. '],"last_seq":' .. last ..
    ',"dropped":' .. (logd:get("dropped") or 0) .. "}"
  return { status = 200, body = body, headers = { ["Content-Type"] = "application/json" } }
end

local function control_connections()
  local logd = ngx.shared.log
  local last = logd:get("seq") or 0
  local seen = { api = {}, cdn = {} }
  local counts = { api = { connections = 0, requests = 0 }, cdn = { connections = 0, requests = 0 } }
  for seq = 1, last do
    local raw = logd:get("r:" .. seq)
    local e = raw and cjson.decode(raw)
    if e and counts[e.server] then
      local c = counts[e.server]
      c.requests = c.requests + 1
      if e.connection and not seen[e.server][e.connection] then
        seen[e.server][e.connection] = true
        c.connections = c.connections + 1
      end
    end
  end
  return json_response(200, counts)
end

local function control_reset()
  ngx.shared.jobs:flush_all()
  ngx.shared.jobs:flush_expired()
  ngx.shared.faults:flush_all()
  ngx.shared.faults:flush_expired()
  ngx.shared.log:flush_all()
  ngx.shared.log:flush_expired()
  ngx.shared.config:flush_all()
  ngx.shared.config:flush_expired()
  ngx.shared.posts:flush_all()
  ngx.shared.posts:flush_expired()
  return json_response(200, { ok = true })
end

local VALID_KINDS = {
  status = true, malformed = true, truncated = true, slow = true, drop = true,
  huge = true, html = true, stall = true, throttle = true, fields = true, raw = true,
}

local function route_control(method, uri)
  if uri == "/_mock/ping" then
    return json_response(200, { ok = true, cdn_base = settings.cdn_base, prefix = settings.prefix })
  end
  if uri == "/_mock/reset" then
    if method ~= "POST" then return method_not_allowed("POST") end
    return control_reset()
  end
  if uri == "/_mock/jobs" then
    if method ~= "POST" then return method_not_allowed("POST") end
    local opts, err = read_json()
    if not opts then return bad(err) end
    return control_jobs(opts)
  end
  local id = uri:match("^/_mock/jobs/([^/]+)$")
  if id then
    local job = load_job(id)
    if not job then return json_response(404, { error = "no such job" }) end
    local cfg = get_config()
    local stage = job_stage(job, false)
    return json_response(200, {
      job = job, stage = stage,
      polls = ngx.shared.jobs:get("stage:" .. id) or 0,
      view = job_view(job, stage, cfg),
    })
  end
  if uri == "/_mock/faults" then
    if method == "GET" then
      local raw = ngx.shared.faults:get("list")
      return { status = 200, headers = { ["Content-Type"] = "application/json" },
        body = '{"faults":' .. (raw or "[]") .. "}" }
    elseif method == "DELETE" then
      ngx.shared.faults:delete("list")
      return json_response(200, { ok = true })
    elseif method == "POST" then
      local f, err = read_json()
      if not f then return bad(err) end
      -- {"faults": [...]} queues several at once, in order
      local list = type(f.faults) == "table" and f.faults or { f }
      for _, one in ipairs(list) do
        if type(one.match) ~= "string" or one.match == "" then
          return bad("match (a path, or a prefix ending in *) is required")
        end
        if not VALID_KINDS[one.kind] then return bad("unknown kind: " .. tostring(one.kind)) end
        one.times = tonumber(one.times) or 1
        if one.times == 0 then return bad("times must be >= 1 or -1") end
      end
      local n
      for _, one in ipairs(list) do n = add_fault(one) end
      return json_response(200, { ok = true, queued = n })
    end
    return method_not_allowed("GET, POST, DELETE")
  end
  if uri == "/_mock/config" then
    if method == "GET" then
      local cfg = get_config()
      cfg.cdn_base = settings.cdn_base
      cfg.big_path = big_path()
      return json_response(200, cfg)
    elseif method ~= "POST" then
      return method_not_allowed("GET, POST")
    end
    local patch, err = read_json()
    if not patch then return bad(err) end
    if patch.big_size ~= nil and patch.big_size ~= null then
      local size = patch.big_size == true and 1024 * 1024 * 1024 or tonumber(patch.big_size)
      if not size or size < 0 then return bad("big_size must be a byte count or true") end
      patch.big_size = size
      local ok, merr = pcall(make_big, size, patch.big_sparse == true)
      if not ok then return json_response(500, { error = "could not make big.mp4: " .. tostring(merr) }) end
    end
    merge_config(patch)
    local cfg = get_config()
    cfg.cdn_base = settings.cdn_base
    cfg.big_path = big_path()
    return json_response(200, cfg)
  end
  local akind, aid = uri:match("^/_mock/(%a+)/?([^/]*)$")
  if ASSET_KINDS[akind] then
    if aid ~= "" then
      local a = load_asset(akind, aid)
      if not a then return json_response(404, { error = "no such asset" }) end
      local stage = asset_stage(a, false)
      return json_response(200, { asset = a, stage = stage, view = asset_view(a, stage),
        polls = ngx.shared.jobs:get("astage:" .. akind .. ":" .. aid) or 0 })
    end
    if method ~= "POST" then return method_not_allowed("POST") end
    local opts, err = read_json()
    if not opts then return bad(err) end
    local ids = {}
    for i = 1, tonumber(opts.count) or 1 do
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      if opts.count and opts.id then o.id = opts.id .. "-" .. i end
      o.count = nil
      local a, aerr = new_asset(akind, o)
      if not a then return bad(aerr) end
      ids[i] = a.id
    end
    return json_response(200, { ids = ids })
  end
  if uri == "/_mock/log" then
    return control_log(ngx.req.get_uri_args())
  end
  if uri == "/_mock/connections" then
    return control_connections()
  end
  if uri == "/_mock/posts" then -- renders made, per md5 of the uploaded driving video (else image)
    local counts = {}
    for _, k in ipairs(ngx.shared.posts:get_keys(0)) do
      if k ~= "\0made" then counts[k] = ngx.shared.posts:get(k) end
    end
    return json_response(200, { made = ngx.shared.posts:get("\0made") or 0, counts = counts })
  end
  return json_response(404, { error = "unknown control endpoint " .. uri })
end

function M.control()
  ngx.update_time()
  return send(route_control(ngx.req.get_method(), ngx.var.uri))
end

return M
