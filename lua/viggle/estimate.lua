--- What a render will cost, before it is sent: the duration of a local
--- driving video read from its MP4 header (the `mvhd` box; nothing is
--- decoded), of a scene from GET /api/scenes/{id}; 1 credit per second of
--- output, 2 in fast mode. A remote URL's duration is known only to the
--- server: its cost is unknown (exact = false, credits = nil), never guessed.
--- Loaded on first use by client:estimate.
local errors = require("viggle.errors")

local type, tostring, error = type, tostring, error
local byte, format, ceil = string.byte, string.format, math.ceil
local E = errors.new

local _M = {}

-- Big-endian unsigned integers of 4 and 8 bytes (8 as a double: exact up to 2^53).
local function u32(s, i)
  local a, b, c, d = byte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local function u64(s, i) return u32(s, i) * 4294967296 + u32(s, i + 4) end

-- Walks the boxes from the file's position up to `limit` (an offset, or nil
-- for the end of the file) and returns the offset and size of the first box
-- of type `want`'s body, or nil, why.
local function find_box(f, want, limit)
  while true do
    local at = f:seek()
    if limit and at + 8 > limit then return nil, "no " .. want .. " box" end
    local head = f:read(8)
    if not head or #head < 8 then return nil, "no " .. want .. " box" end
    local size, kind, header = u32(head, 1), head:sub(5, 8), 8
    if size == 1 then -- a 64-bit size follows the type
      local large = f:read(8)
      if not large or #large < 8 then return nil, "a truncated box header" end
      size, header = u64(large, 1), 16
    elseif size == 0 then -- the box runs to the end of the file (or of its parent)
      size = (limit or f:seek("end")) - at
      f:seek("set", at + header)
    end
    if size < header then return nil, format("a box of impossible size %d at offset %d", size, at) end
    if kind == want then return at + header, size - header end
    if limit and at + size > limit then return nil, "a box overruns its parent" end
    f:seek("set", at + size)
  end
end

--- The duration in seconds of an MP4 (or MOV) file, from moov/mvhd
--- (versions 0 and 1). Returns seconds, or nil, err (invalid_argument for a
--- file that is not an MP4 we can read the duration of).
---@param path string
---@return number|nil seconds
---@return viggle.Error|nil err
function _M.mp4_duration(path)
  if type(path) ~= "string" then error("bad argument #1 to 'mp4_duration' (file path expected)", 2) end
  local f, ferr = io.open(path, "rb")
  if not f then return nil, E("invalid_argument", format("cannot read %s (%s)", path, tostring(ferr))) end
  local function fail(why)
    f:close()
    return nil, E("invalid_argument", format("%s: cannot read the MP4 duration: %s", path, why))
  end
  local moov, moov_size = find_box(f, "moov")
  if not moov then return fail(moov_size) end
  f:seek("set", moov)
  local mvhd, mvhd_size = find_box(f, "mvhd", moov + moov_size)
  if not mvhd then return fail(mvhd_size) end
  f:seek("set", mvhd)
  local body = f:read(32)
  f:close()
  if not body or #body < 4 then return nil, E("invalid_argument", path .. ": a truncated mvhd box") end
  local version = byte(body, 1)
  local timescale, duration
  if version == 0 and #body >= 20 and mvhd_size >= 20 then
    timescale, duration = u32(body, 13), u32(body, 17)
  elseif version == 1 and #body >= 32 and mvhd_size >= 32 then
    timescale, duration = u32(body, 21), u64(body, 25)
  else
    return nil, E("invalid_argument", format("%s: an mvhd box of version %d or too short", path, version))
  end
  if timescale == 0 then return nil, E("invalid_argument", path .. ": the mvhd timescale is 0") end
  if (version == 0 and duration == 0xFFFFFFFF) or (version == 1 and duration >= 2 ^ 64 - 2 ^ 12) then
    return nil, E("invalid_argument", path .. ": the MP4 does not say its duration (mvhd duration unknown)")
  end
  return duration / timescale
end

--- What a render of `params` (those of client:render) will cost:
--- {credits, seconds, exact, fast, source, reason}. `exact` is true when the
--- duration is known (a local MP4, a scene); for a remote URL `credits` and
--- `seconds` are nil and `reason` says why. Credits are whole seconds rounded
--- up, doubled in fast mode. Returns nil, err for a file that is not a
--- readable MP4, a missing motion source, or a failed scene lookup.
---@param self viggle.Client
---@param params viggle.RenderParams
---@param opts {timeout: number?}|nil
---@return {credits: integer|nil, seconds: number|nil, exact: boolean, fast: boolean, source: string, reason: string|nil}|nil
---@return viggle.Error|nil err
function _M.estimate(self, params, opts)
  if type(params) ~= "table" then error("bad argument #1 to 'estimate' (table expected)", 2) end
  local fast = params.fast == true
  local seconds, source, err
  if params.driving_video ~= nil then
    source = "driving_video"
    seconds, err = _M.mp4_duration(params.driving_video)
    if not seconds then return nil, err end
  elseif params.scene_id ~= nil then
    source = "scene_id"
    local scene
    scene, err = self.scenes:get(params.scene_id, opts)
    if not scene then return nil, err end
    seconds = tonumber(scene.duration_seconds)
    if not seconds then
      return { exact = false, fast = fast, source = source,
               reason = format("scene %s has no duration yet (status %s)", params.scene_id, tostring(scene.status)) }
    end
  elseif params.driving_video_url ~= nil then
    return { exact = false, fast = fast, source = "driving_video_url",
             reason = "the driving video is a remote URL: only the server knows its duration" }
  else
    return nil, E("invalid_argument", "no motion to estimate: driving_video, driving_video_url or scene_id")
  end
  return { credits = ceil(seconds - 1e-9) * (fast and 2 or 1), seconds = seconds, exact = true,
           fast = fast, source = source }
end

return _M
