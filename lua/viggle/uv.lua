--- Drives viggle's scheduler from a libuv loop: luv (`require "luv"`), or
--- Neovim's `vim.uv` / `vim.loop`. The transfers run on the C core's
--- transfer thread; a uv poll handle watches its wake-up descriptor and
--- collects finished transfers, and a uv timer runs the tasks' timers, so the
--- host's loop never blocks on a transfer nor spends its time moving bytes;
--- tasks (viggle.spawn) are resumed from the host's loop.
---
---   local uv = require("luv")
---   require("viggle.uv").install(uv)
---   viggle.spawn(function() local job = client:await(id) ... end)
---   uv.run()
---
--- In Neovim, pass `{ schedule = vim.schedule }` (viggle.nvim does) so that
--- tasks, and so every user callback, run on the main loop where the editor's
--- API may be called, never inside a fast event.
local core = require("viggle.core")
local loop = require("viggle.loop")

local error, math_max, floor = error, math.max, math.floor

local _M = {}

local installed

---@class viggle.UvOptions
---@field schedule fun(fn: function)|nil runs fn soon on the host's main loop (default: a 0 ms uv timer)
---@field max_connects integer|nil connections kept alive (default 256)
---@field wait fun(seconds: number)|nil how a wait outside a task turns the host's loop (default: uv.run("once"))

local function ms(seconds) return math_max(0, floor(seconds * 1000 + 0.5)) end

-- Multis given up (viggle.configure, uninstall) with their stopped watchers:
-- kept, never closed, so that no new descriptor takes the number of one a uv
-- handle still names (closing a handle then would unregister the new one;
-- and luv crashes at exit on a handle closed after the loop's last run).
local retired = {}

-- A multi on the transfer thread and the uv poll handle that watches its
-- wake-up descriptor; the handle runs only while transfers are in flight (an
-- active handle keeps uv.run() from returning).
local function new_multi(d, multi_opts)
  d.multi = assert(loop.new_multi(multi_opts))
  d.watcher = d.uv.new_poll(d.multi:fd())
  d.watching = false
end

-- Starts or stops the watcher as transfers are in flight or not.
local function watch(d)
  if d.multi:count() > 0 then
    if not d.watching then
      d.watching = true
      d.watcher:start("r", function()
        local _, finished = d.multi:perform()
        loop.dispatch(finished)
        watch(d)
      end)
    end
  elseif d.watching then
    d.watching = false
    d.watcher:stop()
  end
end

-- Gives the multi up (nothing in flight).
local function retire_multi(d)
  d.watcher:stop()
  d.watching = false
  retired[#retired + 1] = { d.multi, d.watcher }
end

-- A wait outside a task (task:join, viggle.run, await_all called from
-- plain code) turns the host's loop once; inside the loop's own callbacks
-- that would re-enter it, so there it is refused with a clear message.
local function default_wait(uv)
  return function()
    if uv.loop_mode and uv.loop_mode() ~= nil then
      error("viggle.uv: cannot wait outside a task while the uv loop is running: do it inside viggle.spawn", 0)
    end
    uv.run("once")
  end
end

-- The driver's functions for viggle.loop (see loop.set_driver).
local function driver_functions(d, uv, opts)
  local task_timer, kick_timer = uv.new_timer(), uv.new_timer()
  local scheduled = false
  local run_soon
  -- Runs ready tasks and due timers, then sets the timer for the next one.
  local function turn()
    scheduled = false
    loop.step(0)
    watch(d)
    local at = loop.next_timer()
    task_timer:stop()
    if at then task_timer:start(ms(at - core.now()), 0, run_soon) end
  end
  local schedule = opts.schedule or function(fn) kick_timer:start(0, 0, fn) end
  run_soon = function()
    if not scheduled then
      scheduled = true
      schedule(turn)
    end
  end
  d.add = function(r)
    local ok, err, code = d.multi:add(r)
    if ok then watch(d) end
    return ok, err, code
  end
  d.remove = function(r)
    d.multi:remove(r)
    watch(d)
  end
  d.count = function() return d.multi:count() end
  d.drive = function() local _, finished = d.multi:perform() return finished end
  d.wait = opts.wait or default_wait(uv)
  d.wake = run_soon
  d.stop_timers = function()
    task_timer:stop()
    kick_timer:stop()
  end
end

--- Installs the libuv driver. Call it once, while no transfer is in flight.
--- Its multi is made by viggle.loop with the options of viggle.configure,
--- before or after install.
---@param uv table luv, vim.uv or vim.loop
---@param opts viggle.UvOptions|nil
---@return table driver
function _M.install(uv, opts)
  opts = require("viggle.http").check_opts(opts, "install")
  if installed then return installed end
  if type(uv) ~= "table" or not uv.new_timer or not uv.new_poll then
    error("bad argument #1 to 'install' (luv, vim.uv or vim.loop expected)", 2)
  end
  local multi_opts = { thread = true, max_connects = opts.max_connects }
  local d = { uv = uv }
  new_multi(d, multi_opts)
  driver_functions(d, uv, opts)

  --- Makes the multi again (viggle.configure, nothing in flight).
  function d.remake()
    retire_multi(d)
    new_multi(d, multi_opts)
  end

  --- Removes the driver (nothing may be in flight). Its timers and watcher
  --- are stopped, not closed: the host's loop frees them at its end.
  function d.uninstall()
    if d.multi:count() > 0 then
      error("viggle.uv: uninstall while transfers are in flight; cancel their tasks first", 2)
    end
    installed = nil
    loop.set_driver(nil)
    retire_multi(d)
    d.stop_timers()
  end

  loop.set_driver(d)
  installed = d
  d.wake() -- tasks spawned before install
  return d
end

return _M
