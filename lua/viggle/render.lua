--- Render, download and run: the media half of the client, loaded on first
--- use by client:render, client:download and client:run (README.md documents
--- them).
local core = require("viggle.core")
local errors = require("viggle.errors")
local loop = require("viggle.loop")
local http = require("viggle.http")
local follow = require("viggle.follow")

local type, tostring, pairs, ipairs, error, next, tonumber = type, tostring, pairs, ipairs, error, next, tonumber
local format, concat, floor = string.format, table.concat, math.floor
local E = errors.new
local split_url, quote, check_opts, need_key = http.split_url, http.quote, http.check_opts, http.need_key
local backoff, call_back = http.backoff, follow.call_back
local D = http.DEFAULTS

local _M = {}

-- ---- render ------------------------------------------------------------------

local BACKGROUND = { original = true, solid = true, transparent = true, inpaint = true }
local MODELS = { V4_Preview = true, V3_Preview = true }
local IMAGE_TYPES = { png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", webp = "image/webp" }
local RENDER_FIELDS = {
  ref_image = true, ref_image_url = true, driving_video = true, driving_video_url = true,
  character_id = true, scene_id = true, character_mapping = true, model = true,
  background_mode = true, bg_color = true, fast = true,
}

local function bad(msg) return nil, E("invalid_argument", msg) end

local function basename(path) return path:match("([^/]+)$") or path end

local function file_part(name, path, types, default_type)
  if type(path) ~= "string" or path == "" then return bad(name .. " must be a file path") end
  local f, ferr = io.open(path, "rb")
  if not f then return bad(format("%s: cannot read %s (%s)", name, path, tostring(ferr))) end
  local data, rerr = f:read(1) -- a directory opens but cannot be read
  f:close()
  if not data then
    return bad(format("%s: cannot read %s (%s)", name, path, rerr and tostring(rerr) or "the file is empty"))
  end
  local ext = (path:match("%.(%w+)$") or ""):lower()
  return { name = name, file = path, filename = basename(path), type = types and types[ext] or default_type }
end

local function url_value(name, v)
  local scheme = split_url(v)
  if scheme ~= "http" and scheme ~= "https" then return bad(name .. " must be an http(s) URL, got " .. quote(v)) end
  return { name = name, value = v }
end

local function colour(v)
  local parts = {}
  if type(v) == "table" then
    parts = { v[1] or v.r, v[2] or v.g, v[3] or v.b }
  elseif type(v) == "string" then
    for p in (v .. ","):gmatch("%s*([^,]*)%s*,") do parts[#parts + 1] = tonumber(p) end
  end
  if #parts ~= 3 then return bad("bg_color must be {r, g, b} or \"r,g,b\", got " .. quote(v)) end
  for i = 1, 3 do
    local c = parts[i]
    if type(c) ~= "number" or c < 0 or c > 255 or c ~= floor(c) then
      return bad("bg_color values must be whole numbers from 0 to 255, got " .. quote(v))
    end
    parts[i] = format("%d", c)
  end
  return { name = "bg_color", value = concat(parts, ",") }
end

-- params -> multipart parts, or nil, err. Nothing is sent for bad params.
local function render_form(p)
  local form = {}
  for k in pairs(p) do
    if not RENDER_FIELDS[k] then return bad("unknown render parameter " .. quote(k)) end
  end
  local function add(part, err)
    if not part then return err end
    form[#form + 1] = part
  end
  local err
  if p.ref_image ~= nil then err = add(file_part("ref_image", p.ref_image, IMAGE_TYPES, "application/octet-stream")) end
  if not err and p.driving_video ~= nil then err = add(file_part("driving_video", p.driving_video, nil, "video/mp4")) end
  if not err and p.ref_image_url ~= nil then err = add(url_value("ref_image_url", p.ref_image_url)) end
  if not err and p.driving_video_url ~= nil then err = add(url_value("driving_video_url", p.driving_video_url)) end
  for _, k in ipairs({ "character_id", "scene_id" }) do
    if not err and p[k] ~= nil then
      if type(p[k]) ~= "string" or p[k] == "" then err = E("invalid_argument", k .. " must be a non-empty string")
      else form[#form + 1] = { name = k, value = p[k] } end
    end
  end
  if not err and p.character_mapping ~= nil then
    local m, text = p.character_mapping, nil
    if type(m) == "table" then
      for seg, char in pairs(m) do
        if type(seg) ~= "string" or type(char) ~= "string" then
          err = E("invalid_argument", "character_mapping must map segment ids (strings) to character ids (strings)")
        end
      end
      if not err then
        if next(m) == nil then err = E("invalid_argument", "character_mapping is empty") end
        text = require("cjson.safe").encode(m)
      end
    elseif type(m) == "string" then
      if type(core.decode(m)) ~= "table" then
        err = E("invalid_argument", "character_mapping is not a JSON object: " .. quote(m))
      end
      text = m
    else
      err = E("invalid_argument", "character_mapping must be a table or a JSON string")
    end
    if not err then form[#form + 1] = { name = "character_mapping", value = text, type = "application/json" } end
  end
  if not err and p.model ~= nil then
    if not MODELS[p.model] then err = E("invalid_argument", "model must be V4_Preview or V3_Preview, got " .. quote(p.model))
    else form[#form + 1] = { name = "model", value = p.model } end
  end
  if not err and p.background_mode ~= nil then
    if not BACKGROUND[p.background_mode] then
      err = E("invalid_argument",
        "background_mode must be original, solid, transparent or inpaint, got " .. quote(p.background_mode))
    else form[#form + 1] = { name = "background_mode", value = p.background_mode } end
  end
  if not err and p.bg_color ~= nil then err = add(colour(p.bg_color)) end
  if not err and p.fast ~= nil then
    if type(p.fast) ~= "boolean" then err = E("invalid_argument", "fast must be a boolean")
    else form[#form + 1] = { name = "fast", value = tostring(p.fast) } end
  end
  if err then return nil, err end
  if #form == 0 then
    return bad("render needs a character (ref_image, ref_image_url, character_id) and a motion "
               .. "(driving_video, driving_video_url, scene_id)")
  end
  return form
end

-- Only what surely never reached the server is retried for a POST: a
-- refused connection, or a 429/503 that names when to come back.
local function post_retryable(err)
  if err.code == "COULDNT_CONNECT" or err.code == "COULDNT_RESOLVE_HOST" then return true end
  return (err.status == 429 or err.status == 503) and err.retry_after ~= nil
end

--- client:render (see client.lua; a POST is retried only when post_retryable).
---@param params viggle.RenderParams
---@param opts {timeout: number?, retries: integer?}|nil
---@return {job_id: string, status: string, mode: string?, enqueued_at: string?}|nil job
---@return viggle.Error|nil err
---@param self viggle.Client
function _M.render(self, params, opts)
  if type(params) ~= "table" then error("bad argument #1 to 'render' (table expected)", 2) end
  opts = check_opts(opts, "render")
  local err = need_key(self)
  if err then return nil, err end
  local form
  form, err = render_form(params)
  if not form then return nil, err end
  local attempt = 0
  local job
  while true do
    job, err = http.api(self, { method = "POST", path = "/api/render", form = form,
                                timeout = opts.timeout or 0, low_speed_time = D.stall_timeout })
    if job or attempt >= (opts.retries or self.retries) or not post_retryable(err) then break end
    attempt = attempt + 1
    local wait = err.retry_after or backoff(attempt, 0.5, 4)
    if wait > D.post_max_wait then break end
    loop.sleep(wait)
  end
  if not job then return nil, err end
  if type(job.job_id) ~= "string" then return nil, E("decode", "the render answer has no job_id") end
  return job
end

-- ---- download ----------------------------------------------------------------

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

local function pick_url(job, mask)
  if mask then return job.mask_cdn_url end
  return job.cdn_url or job.download_url
end

--- client:download (see client.lua): streams to `path .. ".part"` and
--- renames on success; resumes a .part with Range; checks the length; fetches
--- a fresh link once when a job's link has expired (403/404).
---@param target table|string a job table, a job id, or a URL
---@param path string where the video goes
---@param opts viggle.DownloadOptions|nil
---@return string|nil path
---@return {bytes: integer, total: integer, resumed_from: integer, url: string}|viggle.Error info_or_err
---@param self viggle.Client
function _M.download(self, target, path, opts)
  if type(path) ~= "string" or path == "" then error("bad argument #2 to 'download' (file path expected)", 2) end
  opts = check_opts(opts, "download")
  local job, job_id, url, err
  if type(target) == "table" then
    job, job_id = target, target.job_id
  elseif type(target) == "string" and target:find("://", 1, true) then
    url = target
  elseif type(target) == "string" then
    job_id = target
    job, err = self:status(job_id)
    if not job then return nil, err end
  else
    error("bad argument #1 to 'download' (job table, job id or URL expected)", 2)
  end
  local function from_job()
    url = pick_url(job, opts.mask)
    if url then return true end
    if opts.mask then
      err = E("invalid_argument", "the job has no mask_cdn_url (only transparent renders have one)", { job_id = job_id })
    else
      err = E("invalid_argument", format("the job is %s: it has no video yet", tostring(job.status)), { job_id = job_id })
    end
  end
  if job and not from_job() then return nil, err end
  local scheme = split_url(url)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, E("invalid_argument", "refusing to download a non-http(s) URL: " .. quote(url), { job_id = job_id })
  end
  if not opts.overwrite and file_size(path) then
    return nil, E("invalid_argument", path .. " exists (pass overwrite = true to replace it)", { job_id = job_id })
  end
  local part = path .. ".part"
  local on_progress, cb_err = opts.on_progress, nil
  local refreshed, restarted = false, false
  while true do
    local offset = (opts.resume ~= false and file_size(part)) or 0
    local res
    res, err = http.exchange(self, {
      url = url, output = part, append = offset > 0, resume_from = offset, json = false,
      timeout = opts.timeout or 0, low_speed_time = opts.stall_timeout or 60, max_body = 0, job_id = job_id,
      tick = on_progress and function(r)
        local got, total = r:progress()
        cb_err = call_back(on_progress, "on_progress", job_id, offset + got, total >= 0 and offset + total or nil)
        return cb_err == nil
      end or nil,
    })
    if cb_err then return nil, cb_err end
    if not res then
      if err.code == "RANGE_ERROR" and not restarted then -- the server cannot resume: start over
        os.remove(part)
        restarted = true
      else
        return nil, err
      end
    elseif res.status == 416 and not restarted then
      os.remove(part)
      restarted = true
    elseif (res.status == 403 or res.status == 404) and job_id and not refreshed then
      refreshed = true -- an expired link: a fresh status gives a fresh one
      job, err = self:status(job_id)
      if not job then return nil, err end
      if not from_job() then return nil, err end
    elseif res.status < 200 or res.status >= 300 then
      if offset == 0 then os.remove(part) end
      err = errors.from_http(res, nil, { job_id = job_id })
      if res.status == 403 or res.status == 404 then
        err.kind = "http"
        err.message = format("the download link was refused (HTTP %d): it may have expired", res.status)
      end
      return nil, err
    else
      local size = file_size(part) or 0
      local length = tonumber(res.headers["content-length"])
      local whole = res.headers["content-range"] and tonumber(res.headers["content-range"]:match("/(%d+)%s*$"))
      local expected = whole or (length and (res.status == 206 and offset or 0) + length)
      if expected and size ~= expected then
        return nil, E("network", format("download incomplete: %d of %d bytes (run again to resume)", size, expected),
          { job_id = job_id, retryable = true })
      end
      if on_progress then
        cb_err = call_back(on_progress, "on_progress", job_id, size, expected or size)
        if cb_err then return nil, cb_err end
      end
      if opts.overwrite then os.remove(path) end
      local ok, rerr = os.rename(part, path)
      if not ok then return nil, E("io", "cannot move the download into place: " .. tostring(rerr), { job_id = job_id }) end
      return path, { bytes = size, total = expected or size, resumed_from = offset, url = url }
    end
  end
end

--- client:run (see client.lua); err.job_id is set once a job exists.
---@param params viggle.RenderParams
---@param opts table|nil await options plus output, overwrite, mask, on_download, on_created
---@return table|nil job the complete job
---@return string|viggle.Error|nil path_or_err the downloaded file (with opts.output), or the error
---@param self viggle.Client
function _M.run(self, params, opts)
  opts = check_opts(opts, "run")
  local job, err = _M.render(self, params, { timeout = opts.upload_timeout })
  if not job then return nil, err end
  if opts.on_created then
    local cerr = call_back(opts.on_created, "on_created", job.job_id, job)
    if cerr then return nil, cerr end
  end
  local done
  done, err = self:await(job.job_id, opts)
  if not done then return nil, err end
  if not opts.output then return done end
  local path
  path, err = _M.download(self, done, opts.output, { overwrite = opts.overwrite, mask = opts.mask,
                                                   on_progress = opts.on_download })
  if not path then return nil, err end
  return done, path
end

return _M
