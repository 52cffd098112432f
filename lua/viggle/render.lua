--- Render, download and run: the media half of the client, loaded on first
--- use by client:render, client:download and client:run (README.md documents
--- them).
local core = require("viggle.core")
local errors = require("viggle.errors")
local http = require("viggle.http")
local follow = require("viggle.follow")

local type, tostring, pairs, ipairs, error, next, tonumber = type, tostring, pairs, ipairs, error, next, tonumber
local format, concat, floor = string.format, table.concat, math.floor
local E = errors.new
local split_url, quote, check_opts, need_key = http.split_url, http.quote, http.check_opts, http.need_key
local call_back = follow.call_back
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
  -- only a regular file: a FIFO would block the open, /dev/zero never end
  local kind, kerr = core.file_kind(path)
  if not kind then return bad(format("%s: cannot read %s (%s)", name, path, tostring(kerr))) end
  if kind ~= "file" then return bad(format("%s: cannot read %s (a %s, not a regular file)", name, path, kind)) end
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

-- What viggle.assets checks the same way (a preprocess is a multipart POST too).
_M.file_part, _M.url_value, _M.IMAGE_TYPES = file_part, url_value, IMAGE_TYPES
_M.BACKGROUND, _M.MODELS = BACKGROUND, MODELS

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

--- Checks render params as client:render would, sending nothing: true, or
--- nil, err (invalid_argument naming the field).
---@param params viggle.RenderParams
---@return boolean|nil ok
---@return viggle.Error|nil err
function _M.check_params(params)
  local form, err = render_form(params)
  if not form then return nil, err end
  return true
end

-- The error of a failed POST as the caller should see it: a file that went
-- away (or changed kind) since the check is an "io" error naming it.
local function upload_error(form, err)
  if err.kind == "network" or err.kind == "io" then
    for _, part in ipairs(form) do
      local kind, kerr
      if part.file then kind, kerr = core.file_kind(part.file) end
      if part.file and kind ~= "file" then
        return E("io", format("%s: cannot read %s (%s)", part.name, part.file,
          kind and ("it is now a " .. kind) or tostring(kerr)), { code = err.code, cause = err })
      end
    end
  end
  return err
end

--- client:render (see client.lua; the POST is retried only as http.post says).
--- On failure err.uncertain is true when the POST may have created a job all
--- the same (sent whole, no definite answer): sending it again could pay twice.
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
  local job
  job, err = http.post(self, { path = "/api/render", form = form, timeout = opts.timeout }, opts.retries, opts.on_retry)
  if not job then return nil, upload_error(form, err) end
  if type(job.job_id) ~= "string" then return nil, E("decode", "the render answer has no job_id", { uncertain = true }) end
  return job
end

-- ---- download ----------------------------------------------------------------

-- The link of a job's video (or mask), or nil, err when it has none.
local function link_of(job, job_id, mask)
  local url = mask and job.mask_cdn_url or not mask and (job.cdn_url or job.download_url)
  if url then return url end
  if mask then
    return nil, E("invalid_argument", "the job has no mask_cdn_url (only transparent renders have one)", { job_id = job_id })
  end
  return nil, E("invalid_argument", format("the job is %s: it has no video yet", tostring(job.status)), { job_id = job_id })
end

-- The length the answer promised for the whole file, or nil when it named
-- none; and whether its end was a clean one (a chunked or HTTP/2 body ends
-- with a marker libcurl checks; a body without a length that ends when the
-- connection closes may have been cut anywhere).
local function promised_length(res)
  local h = res.headers
  if res.status == 206 then
    return h["content-range"] and tonumber(h["content-range"]:match("/(%d+)%s*$")), false
  end
  local chunked = (h["transfer-encoding"] or ""):lower():find("chunked", 1, true) ~= nil
  return tonumber(h["content-length"]), chunked or res.http_version == "2"
end

-- One download into the locked part, from `offset` (a validated resume) or
-- from zero; returns what the transfer answered.
local function fetch(self, part, url, offset, opts, job_id, progress)
  return http.exchange(self, {
    url = url, output = part, resume_from = offset, json = false,
    timeout = opts.timeout or 0, low_speed_time = opts.stall_timeout or D.stall_timeout, max_body = 0, job_id = job_id,
    tick = progress and function(r)
      local got, total = r:progress()
      return progress(offset + got, total >= 0 and offset + total or nil)
    end or nil,
  })
end

-- A 2xx answer whose Content-Type says text (a proxy's or a portal's sign-in
-- page, an error document in JSON or XML) is not the video, whatever its
-- status: it is never saved under the video's name.
local function not_video(res)
  local ct = res.headers and res.headers["content-type"]
  if type(ct) ~= "string" then return nil end
  local t = ct:match("^%s*([^;%s]+)")
  t = t and t:lower()
  if t and (t:find("^text/") or t:find("^application/json$") or t:find("^application/[%w.%-]*%+json$")
      or t:find("^application/xml$") or t:find("^application/[%w.%-]*%+xml$") or t == "application/javascript") then
    return t
  end
end

-- A finished 2xx transfer: the bytes on disk are the whole video, or an error.
local function check_complete(part, res, job_id)
  local page = not_video(res)
  if page then
    part:reset() -- nothing of the page is kept, nor resumed later
    return nil, E("http", format("the server answered HTTP %d with %s, not the video (a proxy's or a sign-in page?)",
      res.status, page), { job_id = job_id, status = res.status, code = "NOT_VIDEO", retryable = true })
  end
  local size = part:size()
  local expected, clean_end = promised_length(res)
  local function incomplete(msg)
    return nil, E("network", msg .. " (run again to resume)", { job_id = job_id, retryable = true, status = res.status })
  end
  if size == 0 then
    return nil, E("http", format("the server sent an empty file (HTTP %d)", res.status),
      { job_id = job_id, retryable = true, status = res.status })
  end
  if expected and size ~= expected then
    return incomplete(format("download incomplete: %d of %d bytes", size, expected))
  end
  if not expected and not clean_end then
    return incomplete(format("download unverifiable: the server sent no length and closed the connection after %d bytes", size))
  end
  return size, expected or size
end

-- The transfers of one download into its locked part: restarts, one link
-- refresh, the checks, the rename. Returns path, info or nil, err.
local function download_into(self, part, path, url, job_id, opts)
  local progress, cb_err = nil, nil
  if opts.on_progress then
    progress = function(got, total)
      cb_err = call_back(opts.on_progress, "on_progress", job_id, got, total)
      return cb_err == nil
    end
  end
  local refreshed, restarted = false, false
  while true do
    local offset = (opts.resume ~= false and part:validator() and part:size()) or 0
    if offset == 0 then part:reset() end -- bytes with no validator cannot be trusted
    local res, err = fetch(self, part, url, offset, opts, job_id, progress)
    if cb_err then return nil, cb_err end
    if not res then
      if err.code ~= "RANGE_ERROR" or restarted then return nil, err end
      part:reset() -- a 206 that does not start where asked: start over
      restarted = true
    elseif res.status == 416 and not restarted then
      part:reset()
      restarted = true
    elseif (res.status == 403 or res.status == 404) and job_id and not refreshed then
      refreshed = true -- an expired link: a fresh status gives a fresh one
      local job
      job, err = self:status(job_id)
      if job then url, err = link_of(job, job_id, opts.mask) end
      if not url then return nil, err end
    elseif res.status < 200 or res.status >= 300 then
      err = errors.from_http(res, nil, { job_id = job_id })
      if res.status == 403 or res.status == 404 then
        err.kind = "http"
        err.message = format("the download link was refused (HTTP %d): it may have expired", res.status)
      end
      return nil, err
    else
      local size, total = check_complete(part, res, job_id)
      if not size then return nil, total end
      if progress and not progress(size, total) then return nil, cb_err end
      local ok, cerr, ccode = part:commit()
      if not ok then return nil, E("io", "cannot move the download into place: " .. cerr, { code = ccode, job_id = job_id }) end
      return path, { bytes = size, total = total, resumed_from = res.status == 206 and offset or 0, url = url }
    end
  end
end

--- client:download (see client.lua): streams to `path .. ".part"` (never
--- through a link, locked against a second downloader) and renames on
--- success; resumes a .part only when its validator still matches (If-Range);
--- checks the length; fetches a fresh link once when a job's link has expired.
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
  if job then
    url, err = link_of(job, job_id, opts.mask)
    if not url then return nil, err end
  end
  local scheme = split_url(url)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, E("invalid_argument", "refusing to download a non-http(s) URL: " .. quote(url), { job_id = job_id })
  end
  local part, perr, pcode = core.open_part(path, opts.overwrite)
  if not part then
    if pcode == "EXISTS" then
      return nil, E("invalid_argument", path .. " exists (pass overwrite = true to replace it)", { job_id = job_id })
    end
    return nil, E("io", perr, { code = pcode, job_id = job_id })
  end
  local done, info = download_into(self, part, path, url, job_id, opts)
  if not done and part:size() == 0 then part:remove() end -- no empty .part left behind
  part:close()
  return done, info
end

--- client:run (see client.lua); err.job_id is set once a job exists.
---@param params viggle.RenderParams
---@param opts table|nil await options plus output, overwrite, mask, on_download, on_created
---@return table|nil job the complete job
---@return string|viggle.Error|nil path_or_err the downloaded file (with opts.output), or the error
---@param self viggle.Client
function _M.run(self, params, opts)
  opts = check_opts(opts, "run", self)
  local await_opts = {}
  for k in pairs(http.OPTIONS.await) do await_opts[k] = opts[k] end
  if type(params) ~= "table" then error("bad argument #1 to 'run' (table expected)", 2) end
  -- Whatever can fail here must fail before the POST spends credits.
  local err = require("viggle.preflight").check(self, params, opts.output, { overwrite = opts.overwrite })
  if err then return nil, err end
  -- characters and scenes still being made are waited for first: a failed one ends the run unpaid
  local ready
  ready, err = require("viggle.assets").ready_params(self, params, opts)
  if not ready then return nil, err end
  local job
  job, err = _M.render(self, ready, { timeout = opts.upload_timeout, on_retry = opts.on_retry })
  if not job then return nil, err end
  if opts.on_created then
    local cerr = call_back(opts.on_created, "on_created", job.job_id, job)
    if cerr then return nil, cerr end
  end
  local done
  done, err = self:await(job.job_id, await_opts)
  if not done then return nil, err end
  if not opts.output then return done end
  local path
  path, err = _M.download(self, done, opts.output, { overwrite = opts.overwrite, mask = opts.mask,
                                                   on_progress = opts.on_download })
  if not path then return nil, err end
  return done, path
end

return _M
