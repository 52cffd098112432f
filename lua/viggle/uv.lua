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

--- Installs the libuv driver. Call it once, while no transfer is in flight.
---@param uv table luv, vim.uv or vim.loop
---@param opts viggle.UvOptions|nil
---@return table driver
function _M.install(uv, opts)
  if installed then return installed end
  if type(uv) ~= "table" or not uv.new_timer or not uv.new_socket_poll then
    error("bad argument #1 to 'install' (luv, vim.uv or vim.loop expected)", 2)
  end
  opts = opts or {}
  local m = assert(core.multi({ thread = true, max_connects = opts.max_connects }))
  local watcher = uv.new_poll(m:fd()) -- readable while finished transfers wait
  local watching = false
  local task_timer = uv.new_timer()
  local kick_timer = uv.new_timer()
  local scheduled = false
  local d = { multi = m }

  local function ms(seconds) return math_max(0, floor(seconds * 1000 + 0.5)) end

  local run_soon

  -- The watcher runs only while transfers are in flight: an active handle
  -- keeps uv.run() from returning.
  local function watch()
    if m:count() > 0 then
      if not watching then
        watching = true
        watcher:start("r", function()
          local _, finished = m:perform()
          loop.dispatch(finished)
          watch()
        end)
      end
    elseif watching then
      watching = false
      watcher:stop()
    end
  end

  -- Runs ready tasks and due timers, then sets the timer for the next one.
  local function turn()
    scheduled = false
    loop.step(0)
    watch()
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
    local ok, err, code = m:add(r)
    if ok then watch() end
    return ok, err, code
  end
  d.remove = function(r)
    m:remove(r)
    watch()
  end
  d.count = function() return m:count() end
  d.drive = function() local _, finished = m:perform() return finished end
  -- A wait outside a task (task:join, viggle.run, await_all called from
  -- plain code) turns the host's loop once; inside the loop's own callbacks
  -- that would re-enter it, so there it is refused with a clear message.
  d.wait = opts.wait or function()
    if uv.loop_mode and uv.loop_mode() ~= nil then
      error("viggle.uv: cannot wait outside a task while the uv loop is running: do it inside viggle.spawn", 0)
    end
    uv.run("once")
  end
  d.wake = run_soon

  --- Removes the driver (transfers still in flight end as cancelled). Its
  --- timers and watcher are stopped, not closed: the host's loop frees them
  --- at its end (luv crashes at exit on a handle closed after its last run).
  function d.uninstall()
    if m:count() > 0 then
      error("viggle.uv: uninstall while transfers are in flight; cancel their tasks first", 2)
    end
    installed = nil
    loop.set_driver(nil)
    watcher:stop()
    task_timer:stop()
    kick_timer:stop()
    m:close()
  end

  loop.set_driver(d)
  installed = d
  run_soon() -- tasks spawned before install
  return d
end

return _M
