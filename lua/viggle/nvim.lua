--- viggle inside Neovim: drives the scheduler from the editor's own libuv
--- loop, and delivers every task (so every user callback: on_progress,
--- on_update, ...) through vim.schedule, on the main loop where vim.api may
--- be called. The editor never waits on a transfer.
---
---   local viggle = require("viggle.nvim").setup()
---   local client = viggle.new({ api_key = os.getenv("VIGGLE_API_KEY") })
---   viggle.spawn(function()
---     local job, err = client:await(id, { on_progress = function(j)
---       vim.notify(j.status)          -- safe: never a fast event
---     end })
---   end)
---
--- Waiting outside a task (a plain `client:await(id)` called from a mapping)
--- still works but blocks the editor until it returns: spawn a task instead.
local vim = vim

local floor, min, max, tostring, type, format = math.floor, math.min, math.max, tostring, type, string.format

local _M = {}

local driver    -- the viggle.uv driver, once set up
local viggle    -- the viggle module, once set up
local command_client

---@class viggle.NvimOptions
---@field max_connects integer|nil connections libcurl keeps alive (default 256)
---@field command boolean|nil define the :Viggle user command (default true)
---@field client viggle.Client|table|nil the client :Viggle uses, or options for viggle.new
---  (default: viggle.default(), from VIGGLE_BASE_URL and VIGGLE_API_KEY)

-- A wait outside a task (task:join, viggle.run, await_all called outside a
-- task) drives the scheduler with step(), whose uv driver never waits by
-- itself: the uv callbacks that complete transfers only run when the loop
-- turns. vim.wait turns Neovim's loop meanwhile (timers, scheduled
-- callbacks, uv polls), so such a wait ends instead of spinning for ever.
local function patch_wait(d)
  local wake = d.wake
  local woke = false
  d.wake = function()
    woke = true
    return wake()
  end
  d.wait = function(seconds)
    if vim.in_fast_event() then
      error("viggle.nvim: cannot wait outside a task inside a fast event (a uv callback): spawn a task", 0)
    end
    woke = false
    local ms = seconds == math.huge and 1000 or min(1000, max(1, floor(seconds * 1000 + 0.5)))
    vim.wait(ms, function() return woke end, 5)
  end
end

local function notify(msg, level)
  vim.notify("viggle: " .. msg, level or vim.log.levels.INFO)
end

local function describe(job)
  local s = tostring(job.job_id) .. ": " .. tostring(job.status)
  if job.checkpoint then s = s .. ", " .. tostring(job.checkpoint) end
  if type(job.progress_pct) == "number" then s = s .. format(", %d%%", floor(job.progress_pct)) end
  return s
end

local function get_client()
  if command_client == nil then return viggle.default() end
  if type(command_client) == "table" and type(command_client.await) == "function" then return command_client end
  local c, err = viggle.new(command_client)
  if not c then return nil, err end
  command_client = c
  return c
end

local USAGE = "usage: :Viggle status ID... | :Viggle wait ID... | :Viggle cancel ID..."

-- :Viggle status|wait|cancel ID...: each in a task; results through vim.notify.
local function command(args)
  local words = vim.split(args.args, "%s+", { trimempty = true })
  local sub = table.remove(words, 1)
  if (sub ~= "status" and sub ~= "wait" and sub ~= "cancel") or #words == 0 then
    return notify(USAGE, vim.log.levels.ERROR)
  end
  local c, cerr = get_client()
  if not c then return notify(tostring(cerr), vim.log.levels.ERROR) end
  viggle.spawn(function()
    if sub == "wait" then
      local results = c:await_all(words, {
        interval = 2,
        on_progress = function(job) notify(describe(job)) end,
      })
      for i, r in ipairs(results) do
        if viggle.is_error(r) then notify(words[i] .. ": " .. tostring(r), vim.log.levels.ERROR) end
      end
      return
    end
    for _, id in ipairs(words) do
      local r, err = c[sub](c, id)
      if not r then
        notify(id .. ": " .. tostring(err), vim.log.levels.ERROR)
      elseif sub == "status" then
        notify(describe(r))
      else
        notify(id .. ": cancelled")
      end
    end
  end)
end

--- Installs viggle's libuv driver on Neovim's loop (`vim.uv` or `vim.loop`)
--- with `schedule = vim.schedule`, so tasks and every user callback run on
--- the main loop, never in a fast event. Safe to call more than once.
---@param opts viggle.NvimOptions|nil
---@return table viggle the viggle module (require("viggle"))
function _M.setup(opts)
  opts = require("viggle.http").check_opts(opts, "setup")
  viggle = require("viggle")
  if opts.client ~= nil then command_client = opts.client end
  if not driver then
    local uv = vim.uv or vim.loop
    driver = require("viggle.uv").install(uv, { schedule = vim.schedule, max_connects = opts.max_connects })
    patch_wait(driver)
    -- a task that raised and that nobody waits for: said, never lost
    viggle.on_task_error(function(err)
      vim.schedule(function() notify("a task raised an error: " .. tostring(err), vim.log.levels.ERROR) end)
    end)
  end
  if opts.command ~= false and vim.api.nvim_create_user_command then
    vim.api.nvim_create_user_command("Viggle", command, {
      nargs = "+",
      desc = "viggle: status, wait for or cancel render jobs",
      complete = function(lead, line)
        if line:match("^%s*%S+%s+%S*$") then
          return vim.tbl_filter(function(s) return s:sub(1, #lead) == lead end, { "status", "wait", "cancel" })
        end
        return {}
      end,
    })
  end
  return viggle
end

--- The installed viggle.uv driver, or nil before setup.
---@return table|nil driver
function _M.driver() return driver end

--- Removes the driver (only while no transfer is in flight) and :Viggle.
---@return nil
function _M.uninstall()
  if driver then
    driver.uninstall()
    driver = nil
  end
  pcall(vim.api.nvim_del_user_command, "Viggle")
end

return _M
