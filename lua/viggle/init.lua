--- viggle: a client for the Viggle Render API.
---
---   local viggle = require("viggle")
---   local job, err = viggle.await("job_abc123xyz")   -- the default client, from the environment
---   local client = viggle.new{ api_key = "sk-..." }  -- or a client of your own
---
--- Every method returns its result or `nil, err` (see viggle.errors); inside a
--- task (viggle.spawn) waiting yields to the scheduler, outside it blocks.
local core = require("viggle.core")
local client = require("viggle.client")
local errors = require("viggle.errors")
local loop = require("viggle.loop")

local _M = {
  VERSION = core.version,
  errors = errors,
  is_error = errors.is,
  spawn = loop.spawn,
  run = loop.run,
  step = loop.step,
  sleep = loop.sleep,
  configure = loop.configure,
  now = core.now,
  null = core.null,
  TERMINAL = client.TERMINAL,
}

--- Makes a client; see README.md for the options.
_M.new = client.new

local default
--- The default client, built from VIGGLE_BASE_URL and VIGGLE_API_KEY on first use.
---@return viggle.Client|nil client
---@return viggle.Error|nil err
function _M.default()
  if not default then
    local c, err = client.new()
    if not c then return nil, err end
    default = c
  end
  return default
end

local function on_default(method)
  return function(...)
    local c, err = _M.default()
    if not c then return nil, err end
    return c[method](c, ...)
  end
end

_M.status = on_default("status")
_M.await = on_default("await")
_M.await_all = on_default("await_all")
_M.cancel = on_default("cancel")
_M.credits = on_default("credits")
_M.render = on_default("render")
_M.download = on_default("download")
-- (the default client's run is not here: viggle.run runs the scheduler)

--- Runs or resumes a durable batch (see README.md, "Batches"): a JSON Lines
--- manifest and its SQLite journal. Returns the report, or nil, err.
---@param manifest string|table a JSON Lines path, or a list of item tables
---@param opts table|nil
---@return table|nil report
---@return viggle.Error|nil err
function _M.batch(manifest, opts) return require("viggle.batch").run(manifest, opts) end
--- The journal's view of a batch, without touching the API.
---@param manifest string
---@param opts {journal: string?}|nil
---@return table|nil view
---@return viggle.Error|nil err
function _M.batch_status(manifest, opts) return require("viggle.batch").status(manifest, opts) end

return _M
