--- viggle inside nginx (OpenResty's Lua module): loaded by viggle.loop when
--- the `ngx` API is there. Nothing here holds the worker:
---
--- - transfers run on the C core's transfer thread; the coroutine that waits
---   for one (a handler, a light thread, a timer, or the scheduler of a
---   request's tasks) waits on an ngx.semaphore, and a poller (one
---   ngx.timer per worker, alive while transfers are in flight) collects
---   finished transfers every millisecond and posts the semaphores;
--- - waits between polls are ngx.sleep or a semaphore wait;
--- - tasks (viggle.spawn) have one scheduler per request, kept in ngx.ctx: a
---   coroutine belongs to the request that made it, so only that request
---   resumes it, and any number of requests may run tasks at once.
---
--- In a phase where the Lua module cannot yield (init, init_worker, set,
--- header and body filters, log, balancer, ...) a wait raises an error that
--- names the phase and says what to do instead.
local ngx = ngx -- luacheck: ignore 113
local semaphore = require("ngx.semaphore")

local get_phase, ngx_sleep, timer_at = ngx.get_phase, ngx.sleep, ngx.timer.at
local max, min, format, error, pcall = math.max, math.min, string.format, error, pcall

local _M = {}

-- The phases where the Lua module can yield (ngx.sleep and semaphores work).
local YIELDS = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}
local DIRECTIVE = {
  init = "init_by_lua*", init_worker = "init_worker_by_lua*", exit_worker = "exit_worker_by_lua*",
  set = "set_by_lua*", header_filter = "header_filter_by_lua*", body_filter = "body_filter_by_lua*",
  log = "log_by_lua*", balancer = "balancer_by_lua*", ssl_session_store = "ssl_session_store_by_lua*",
}

--- True in a phase where the Lua module can yield.
---@return boolean
function _M.yields() return YIELDS[get_phase()] == true end

--- Raises unless the caller may wait (yield to nginx) in this phase.
---@param what string what was attempted ("wait for a transfer", "sleep")
---@return nil
function _M.check(what)
  local phase = get_phase()
  if YIELDS[phase] then return end
  error(format("viggle: cannot %s in nginx's %s phase (%s), where the Lua module cannot yield; "
    .. "call viggle from a rewrite, access or content handler, or run it in a timer: "
    .. "ngx.timer.at(0, function() ... end)", what, phase, DIRECTIVE[phase] or phase .. "_by_lua*"), 0)
end
local check = _M.check

-- ngx.sleep and semaphore waits count in milliseconds; never 0 (that would
-- not yield) and never for ever.
local function clamp(t) return min(max(t, 0.001), 60) end

--- Sleeps `seconds`, yielding to nginx.
---@param seconds number
---@return nil
function _M.sleep(seconds)
  check("sleep")
  ngx_sleep(clamp(seconds))
end

-- ---- the poller ----------------------------------------------------------------
local driver, dispatch -- the scheduler's driver (on the transfer thread) and its dispatch
local polling = false

local function poll(premature)
  if not premature then
    while driver.count() > 0 do
      ngx_sleep(0.001)
      dispatch(driver.drive())
    end
  end
  polling = false
end

-- Starts the poller unless it runs. False when nginx refused a timer (then
-- the waiters poll themselves).
local function ensure_poller()
  if polling then return true end
  if not driver or driver.count() == 0 then return true end
  local ok = timer_at(0, poll)
  polling = ok and true or false
  return polling
end

-- One wait of at most t seconds on sema (its owner sets .sleeping).
local function wait_on(owner, sema, t)
  if ensure_poller() then
    owner.sleeping = true
    sema:wait(clamp(t))
    owner.sleeping = false
  else
    ngx_sleep(0.001)
    dispatch(driver.drive())
  end
end

--- Called by viggle.loop with its driver (a multi on the transfer thread).
---@param d table the driver
---@param dispatch_fn fun(finished: table|nil)
---@return nil
function _M.adopt(d, dispatch_fn)
  driver, dispatch = d, dispatch_fn
end

-- ---- waits outside tasks ------------------------------------------------------------
local idle = {} -- waiters to reuse (a semaphore each)

--- A waiter for one transfer outside a task: w.wait(t) yields until the
--- transfer finishes (w.wake, called by dispatch) or t passes; w.done()
--- gives it back.
---@return table waiter
function _M.waiter()
  check("wait for a transfer")
  local n = #idle
  if n > 0 then
    local w = idle[n]
    idle[n] = nil
    return w
  end
  local sema = assert(semaphore.new(0))
  local w = { sleeping = false }
  w.wake = function()
    if w.sleeping then
      w.sleeping = false
      sema:post()
    end
  end
  w.wait = function(t) wait_on(w, sema, t) end
  w.done = function() idle[#idle + 1] = w end
  return w
end

-- ---- schedulers: one per request ----------------------------------------------------
local KEY = {} -- ngx.ctx[KEY]: the request's scheduler
local NO_REQUEST = { init = true, init_worker = true, exit_worker = true }

local function wake(s)
  if s.sleeping then
    s.sleeping = false
    s.sema:post()
  end
end

--- The scheduler of the current request (made on first use), or `main` in
--- a phase without a request.
---@param main table the process-wide scheduler
---@param new fun(): table makes a scheduler
---@return table scheduler
function _M.scheduler(main, new)
  if NO_REQUEST[get_phase()] then return main end
  local ok, ctx = pcall(function() return ngx.ctx end)
  if not ok or type(ctx) ~= "table" then return main end
  local s = ctx[KEY]
  if not s then
    s = new()
    s.sema = assert(semaphore.new(0))
    s.sleeping = false
    s.wake = wake
    ctx[KEY] = s
  end
  return s
end

--- Waits at most t seconds for the scheduler `s` to have work: a task made
--- ready (a transfer finished) wakes it.
---@param s table
---@param t number
---@return nil
function _M.wait(s, t)
  check("wait")
  wait_on(s, s.sema, t)
end

return _M
