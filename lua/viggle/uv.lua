--- Drives viggle's scheduler from a libuv loop: luv (`require "luv"`), or
--- Neovim's `vim.uv` / `vim.loop`. libcurl's sockets are watched by uv poll
--- handles and its timeouts by a uv timer, so the host's loop never blocks
--- on a transfer; tasks (viggle.spawn) are resumed from the host's loop.
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

local pairs, error, math_max, floor = pairs, error, math.max, math.floor

local _M = {}

local installed

---@class viggle.UvOptions
---@field schedule fun(fn: function)|nil runs fn soon on the host's main loop (default: a 0 ms uv timer)
---@field max_connects integer|nil connections kept alive (default 256)
---@field wait fun(seconds: number)|nil how a wait outside a task turns the host's loop (default: uv.run("once"))

-- Tells libcurl about activity on fd (-1: its timer), wakes the tasks whose
-- transfers ended, and applies what libcurl asked for meanwhile.
local function act(d, fd, events)
  local _, finished = d.multi:socket_action(fd, events)
  loop.dispatch(finished)
  d.apply()
end

local function ms(seconds) return math_max(0, floor(seconds * 1000 + 0.5)) end

-- Applies what libcurl asked for during the last call into it: the sockets
-- to watch (uv poll handles) and its timer.
local function apply(d)
  local uv, m, polls = d.uv, d.multi, d.polls
  local changes = m:changes()
  if changes then
    for i = 1, #changes, 2 do
      local fd, what = changes[i], changes[i + 1]
      local p = polls[fd]
      if what == "remove" then
        if p then
          p:stop()
          p:close()
          polls[fd] = nil
        end
      elseif what ~= "none" then
        if not p then
          p = uv.new_socket_poll(fd)
          polls[fd] = p
        end
        p:start(what, function(err, events) act(d, fd, err and "e" or (events or "")) end)
      end
    end
  end
  local changed, secs = m:timer()
  if changed then
    d.curl_timer:stop()
    if secs then
      d.curl_timer:start(ms(secs), 0, function() act(d, -1) end)
    end
  end
end

-- Closes the multi and every uv handle watching its sockets.
local function close_multi(d)
  for fd, p in pairs(d.polls) do
    p:stop()
    p:close()
    d.polls[fd] = nil
  end
  d.curl_timer:stop()
  d.multi:close()
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
    d.apply()
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
    if ok then d.apply() end
    return ok, err, code
  end
  d.remove = function(r)
    d.multi:remove(r)
    d.apply()
  end
  d.count = function() return d.multi:count() end
  d.drive = function() return nil end -- the uv callbacks drive
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
  if installed then return installed end
  if type(uv) ~= "table" or not uv.new_timer or not uv.new_socket_poll then
    error("bad argument #1 to 'install' (luv, vim.uv or vim.loop expected)", 2)
  end
  opts = opts or {}
  local multi_opts = { sockets = true, max_connects = opts.max_connects }
  local d = { uv = uv, polls = {}, curl_timer = uv.new_timer() } -- polls: fd -> uv poll handle
  d.multi = assert(loop.new_multi(multi_opts))
  d.apply = function() return apply(d) end
  driver_functions(d, uv, opts)

  --- Makes the multi again (viggle.configure, nothing in flight).
  function d.remake()
    close_multi(d)
    d.multi = assert(loop.new_multi(multi_opts))
  end

  --- Removes the driver (transfers still in flight end as cancelled). Its
  --- timers are stopped, not closed: the host's loop frees them at its end.
  function d.uninstall()
    if d.multi:count() > 0 then
      error("viggle.uv: uninstall while transfers are in flight; cancel their tasks first", 2)
    end
    installed = nil
    loop.set_driver(nil)
    close_multi(d)
    d.stop_timers()
  end

  loop.set_driver(d)
  installed = d
  d.wake() -- tasks spawned before install
  return d
end

return _M
