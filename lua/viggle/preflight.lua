--- Pre-flight: everything that can fail locally, checked before a render is
--- POSTed (and so before any credit is spent): the key, the input files
--- (readable, a regular file, not empty), the output path (absent unless
--- overwrite, in a directory that exists and can be written). Used by
--- client:run, `viggle render --wait -o` and batches.
local errors = require("viggle.errors")

local format, tostring, type, ipairs = string.format, tostring, type, ipairs
local E = errors.new

local _M = {}

local INPUTS = { "ref_image", "driving_video" }

-- nil when `path` is a readable, regular, non-empty file; else why not.
local function input_problem(path)
  if type(path) ~= "string" or path == "" then return "must be a file path" end
  local f, err = io.open(path, "rb")
  if not f then return format("cannot read %s (%s)", path, tostring(err)) end
  local first, rerr = f:read(1) -- a directory opens but cannot be read
  local size = f:seek("end")     -- a device or a pipe has no size
  f:close()
  if not first then
    return format("cannot read %s (%s)", path, rerr and tostring(rerr) or "the file is empty")
  end
  if not size or size <= 0 then return format("%s is not a regular file", path) end
end
_M.input_problem = input_problem

local function dir_of(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- Checks that a file can be written at `path`: it is absent (unless
--- `overwrite`), and its directory exists and takes a new file (tried for
--- real with a probe file, removed at once). `what` names it in messages.
--- Returns nil, or an invalid_argument/io error.
---@param path string
---@param overwrite boolean|nil
---@param what string|nil
---@return viggle.Error|nil
function _M.output_problem(path, overwrite, what)
  what = what or "output"
  if type(path) ~= "string" or path == "" then return E("invalid_argument", what .. " must be a file path") end
  local f = io.open(path, "rb")
  if f then
    f:close()
    if not overwrite then
      return E("invalid_argument", format("%s %s exists (pass overwrite = true to replace it)", what, path))
    end
  end
  local dir = dir_of(path)
  if dir == "" then dir = "/" end
  local probe = format("%s/.viggle-probe-%d-%d", dir, os.time(), math.random(1, 1e9))
  local p, err = io.open(probe, "wb")
  if not p then
    local d = io.open(dir, "rb")
    if d then d:close() end
    if not d then return E("invalid_argument", format("%s %s: the directory %s does not exist", what, path, dir)) end
    return E("io", format("%s %s: cannot write in %s (%s)", what, path, dir, tostring(err)))
  end
  p:close()
  os.remove(probe)
end

--- Everything client:run (with `output`) would find wrong only after paying.
--- `params`: those of client:render; `output`: the video's path or nil.
--- Options: overwrite, mask_output (a second output). Returns nil when all
--- is well, else the error (invalid_argument naming the field or path, auth
--- for a missing key).
---@param c viggle.Client
---@param params table
---@param output string|nil
---@param opts {overwrite: boolean?, mask_output: string?}|nil
---@return viggle.Error|nil
function _M.check(c, params, output, opts)
  opts = opts or {}
  local err = require("viggle.http").need_key(c)
  if err then return err end
  for _, field in ipairs(INPUTS) do
    if params[field] ~= nil then
      local why = input_problem(params[field])
      if why then return E("invalid_argument", field .. ": " .. why) end
    end
  end
  if output ~= nil then
    err = _M.output_problem(output, opts.overwrite, "output")
    if err then return err end
  end
  if opts.mask_output ~= nil then
    return _M.output_problem(opts.mask_output, opts.overwrite, "mask_output")
  end
end

return _M
