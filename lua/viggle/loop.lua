--- The scheduler: tasks (coroutines) that yield while their transfers are in
--- flight and while they sleep. The transfers of tasks run on a thread of the
--- C core (a libcurl multi of its own, csrc/worker.c): the bytes move while
--- the host does its own work, and the scheduler only collects results.
---
--- Every client method calls `loop.transfer` and `loop.sleep`. Inside a task
--- they yield to the scheduler; outside one they block (libcurl's own loop,
--- a real sleep), so a user changes nothing between the two. Inside nginx
--- both yield to nginx wherever its Lua module can yield (viggle.ngx), and
--- tasks have one scheduler per request.
--- A host with its own loop either calls `step(0)` every frame, or installs
--- a driver (viggle.uv) that watches the thread's wake-up descriptor. See
--- docs/architecture.md and docs/hosts.md.
local core = require("viggle.core")
local errors = require("viggle.errors")
local heap = require("viggle.heap")

local coroutine, setmetatable, select, type, error, pairs, ipairs, pcall, tostring = coroutine, setmetatable,
  select, type, error, pairs, ipairs, pcall, tostring
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated
local now, core_sleep, huge, min, max = core.now, core.sleep, math.huge, math.min, math.max
local co_running, co_yield, co_resume, co_status, co_create = coroutine.running, coroutine.yield,
  coroutine.resume, coroutine.status, coroutine.create

local _M = {}

---@class viggle.Task
---@field status '"ready"'|'"waiting"'|'"done"'|'"failed"'|'"cancelled"'
local Task = {}
Task.__index = Task

-- A scheduler's state. There is one per Lua state, except inside nginx: one
-- per request (viggle.ngx), since a coroutine belongs to the request that
-- made it and only that request may resume it.
local function new_scheduler()
  return {
    live = 0,                -- tasks not yet ended
    alive = {},              -- those tasks (task -> true)
    ready = {}, ready_n = 0, -- tasks to resume, in order
    timers = heap.new(),     -- min-heap of {at, task, token}
    -- run_failures: tasks that raised during the run() now running
    -- wake = function(s) end: set by a host whose waits must be woken
  }
end
local main = new_scheduler()
local host -- viggle.ngx inside nginx, else nil
do
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.get_phase and ngx.timer then host = require("viggle.ngx") end
end
-- The scheduler of the caller.
local function sched()
  if host then return host.scheduler(main, new_scheduler) end
  return main
end

local by_co = setmetatable({}, { __mode = "k" }) -- coroutine -> task
local running                                     -- the task being resumed now
local waiting = {}                                -- request -> task, or a host's waiter (a plain wait)
local driver                                      -- how transfers are driven (see below)
local step_budget = 0.002                         -- seconds step() may spend running tasks

-- A cancelled wait raises this sentinel inside the task; it ends the task.
local CANCEL = setmetatable({}, { __tostring = function() return "viggle: task cancelled" end })

local idle_requests, idle_n = {}, 0
--- A request handle from the pool (handles keep their connection caches).
---@return userdata request
function _M.acquire()
  if idle_n > 0 then
    local r = idle_requests[idle_n]
    idle_requests[idle_n] = nil
    idle_n = idle_n - 1
    return r
  end
  return core.request() -- or nil, msg, code
end
--- Gives a finished (or never started) request handle back to the pool.
---@param r userdata a request from acquire
---@return nil
function _M.release(r)
  local st = r:state()
  if st == "running" or st == "closed" then return end
  if idle_n < 64 then
    idle_n = idle_n + 1
    idle_requests[idle_n] = r
  else
    r:close()
  end
end

-- ---- drivers ----------------------------------------------------------------
-- Inside nginx, waits go through viggle.ngx (they yield to nginx, or raise
-- where nginx cannot yield).
local function host_sleep(seconds)
  if host then return host.sleep(seconds) end
  core_sleep(seconds)
end

-- Options of the multis made from now on (see _M.configure).
local multi_opts = {}

--- Makes a multi with the options of viggle.configure (max_host_connections,
--- max_connects) and those of `extra`, which win. Every multi the scheduler
--- drives is made here (the default driver's, viggle.uv's).
---@param extra table|nil more options for core.multi (sockets, max_connects)
---@return userdata|nil multi
---@return string|nil message
---@return string|nil code
function _M.new_multi(extra)
  local o = { max_host_connections = multi_opts.max_host_connections, max_connects = multi_opts.max_connects }
  if extra then
    for k, v in pairs(extra) do o[k] = v end
  end
  return core.multi(o)
end

-- The default driver: a multi on the C core's transfer thread; step()
-- collects what finished and waits on the thread's wake-up descriptor.
local function default_driver()
  local m, msg, code = _M.new_multi({ thread = true })
  if not m then return nil, msg, code end
  local d = {
    multi = m,
    builtin = true,
    add = function(r) return m:add(r) end,
    remove = function(r) m:remove(r) end,
    count = function() return m:count() end,
    drive = function() local _, finished = m:perform() return finished end,
    wait = function(t)
      if m:count() > 0 then m:poll(t)
      elseif t > 0 then host_sleep(t) end
    end,
    wake = function() end,
  }
  if host then host.adopt(d, _M.dispatch) end
  return d
end

-- The driver, made on first use; or nil, msg, code.
local function get_driver()
  if not driver then
    local d, msg, code = default_driver()
    if not d then return nil, msg, code end
    driver = d
  end
  return driver
end

-- Transfers in flight.
local function in_flight()
  return driver and driver.count() or 0
end

-- The private multi for transfers made outside tasks.
local blocking_multi

-- The caps held through _M.multiplexing: multi -> {cap = n, holders = k}.
local mux = setmetatable({}, { __mode = "k" })

--- Sets how the scheduler's connections are managed: `max_host_connections`
--- (a cap on connections to one host; further requests queue), and
--- `max_connects` (idle connections kept alive, default 256): these take
--- effect at once when nothing is in flight, else raise. `step_budget`:
--- the seconds one step() may spend running tasks (default 0.002).
---@param opts {max_host_connections: integer?, max_connects: integer?, step_budget: number?}
---@return nil
function _M.configure(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'configure' (table expected)", 2) end
  require("viggle.http").check_opts(opts, "configure")
  if opts.step_budget ~= nil then
    if type(opts.step_budget) ~= "number" or opts.step_budget < 0 then
      error("bad option 'step_budget' to 'configure' (non-negative number expected)", 2)
    end
    step_budget = opts.step_budget
    if opts.max_host_connections == nil and opts.max_connects == nil then return end
  end
  if in_flight() > 0 or (blocking_multi and blocking_multi:count() > 0) then
    error("viggle.configure: transfers are in flight", 2)
  end
  multi_opts = { max_host_connections = opts.max_host_connections, max_connects = opts.max_connects }
  mux = setmetatable({}, { __mode = "k" }) -- the caps of multis made before are gone with them
  if blocking_multi then
    blocking_multi:close()
    blocking_multi = nil
  end
  if driver and driver.builtin then
    driver.multi:close()
    driver = nil
  elseif driver and driver.remake then
    driver.remake() -- an installed driver (viggle.uv) makes its multi again, with new_multi
  end
end

--- Keeps at least `n` idle connections alive in the scheduler's driver (so a
--- round of `n` polls in flight reuses all of them next time).
---@param n integer
---@return nil
function _M.keep_connections(n)
  local d = get_driver()
  if d and d.multi then d.multi:keep_connections(n) end
end

--- Over HTTP/2 one connection carries many requests: caps the connections
--- to a host at `n` for a burst of multiplexed polls, unless a cap was set
--- (viggle.configure). Without it libcurl 7.88 opens a new connection for
--- nearly every request of a burst once the first connection's streams are
--- taken. The cap belongs to the caller: it holds it until it calls the
--- function returned, and the cap is lifted when its last holder releases it.
---@param n integer
---@return fun() release lifts this caller's hold (calling it again does nothing)
function _M.multiplexing(n)
  local d = get_driver()
  local m = d and d.multi
  if not m or n <= 0 then return function() end end
  local held = mux[m]
  if not held then
    if m:max_host_connections() ~= 0 then return function() end end -- the user's cap stands
    held = { cap = 0, holders = 0 }
    mux[m] = held
  end
  held.holders = held.holders + 1
  if n > held.cap then
    held.cap = n
    m:max_host_connections(n)
  end
  local released = false
  return function()
    if released then return end
    released = true
    held.holders = held.holders - 1
    if held.holders == 0 and mux[m] == held then
      mux[m] = nil
      if m:max_host_connections() == held.cap then m:max_host_connections(0) end
    end
  end
end

--- Replaces the driver (viggle.uv installs one). Only while nothing is in flight.
---@param d table|nil the driver; nil puts the built-in one back
---@return nil
function _M.set_driver(d)
  if in_flight() > 0 then error("viggle: cannot change the driver while transfers are in flight", 2) end
  driver = d
end

-- ---- tasks ------------------------------------------------------------------
local function make_ready(task, ...)
  if task.status == "done" or task.status == "failed" or task.status == "cancelled" then return end
  task.status = "ready"
  task.token = task.token + 1 -- any timer or request still pointing here is stale
  task.resume_args = select("#", ...) > 0 and { n = select("#", ...), ... } or nil
  local s = task.sched
  s.ready_n = s.ready_n + 1
  s.ready[s.ready_n] = task
  if s.wake then s:wake() end
  if driver then driver.wake() end
end

local report -- (below)

local function finish(task, ok, ...)
  local s = task.sched
  s.live = s.live - 1
  s.alive[task] = nil
  if ok then
    task.status = "done"
    task.results = { n = select("#", ...), ... }
  else
    local err = ...
    if err == CANCEL or task.cancelled then
      task.status = "cancelled"
      task.error = errors.new("cancelled", "task cancelled")
    else
      task.status = "failed"
      task.error = err
      if s.run_failures then
        s.run_failures[#s.run_failures + 1] = task
      elseif not task.joined and not task.joiners then
        report(task, err) -- nobody will hear of it otherwise (a host loop drives the tasks)
      end
    end
  end
  local joiners = task.joiners
  task.joiners = nil
  if joiners then
    for i = 1, #joiners do make_ready(joiners[i]) end
  end
end

-- What happens to the error of a task that raised while no run() and no
-- join was waiting for it (a host loop, step() in a game loop): by default
-- a line on stderr; viggle.on_task_error sets another handler.
local function to_stderr(err)
  io.stderr:write("viggle: a task raised an error: ", tostring(err), "\n")
end
local task_error_handler = to_stderr

report = function(task, err)
  local ok, herr = pcall(task_error_handler, err, task)
  if not ok then to_stderr(tostring(err) .. " (and the on_task_error handler raised: " .. tostring(herr) .. ")") end
end

--- Sets the function called with (err, task) when a task raises and neither
--- run() nor a join is waiting for it; nil puts the default back (a line on
--- stderr). Returns the previous handler.
---@param fn fun(err: any, task: viggle.Task)|nil
---@return function previous
function _M.on_task_error(fn)
  if fn ~= nil and type(fn) ~= "function" then error("bad argument #1 to 'on_task_error' (function expected)", 2) end
  local previous = task_error_handler
  task_error_handler = fn or to_stderr
  return previous
end

local finish_or_not

local function resume(task)
  local args = task.resume_args
  task.resume_args = nil
  if task.cancelled and not task.started then -- cancelled before it ever ran
    return finish(task, false, CANCEL)
  end
  task.started = true
  task.status = "running"
  running = task
  if args then
    finish_or_not(task, co_resume(task.co, unpack(args, 1, args.n)))
  else
    finish_or_not(task, co_resume(task.co))
  end
  running = nil
end

finish_or_not = function(task, ok, ...)
  if co_status(task.co) == "dead" then
    if ok then
      finish(task, true, ...)
    else
      local err = ...
      if err ~= CANCEL and not task.cancelled and type(err) == "string" and debug and debug.traceback then
        err = debug.traceback(task.co, err)
      end
      finish(task, false, err)
    end
  elseif not ok then
    finish(task, false, ...)
  elseif task.status == "running" then
    task.status = "waiting"
  end
end

--- Starts `fn(...)` as a task. It runs at the next step (or run).
---@return viggle.Task
---@param fn function
---@param ... any arguments for fn
function _M.spawn(fn, ...)
  if type(fn) ~= "function" then error("bad argument #1 to 'spawn' (function expected)", 2) end
  local s = sched()
  local task = setmetatable({ co = co_create(fn), status = "ready", token = 0, sched = s }, Task)
  by_co[task.co] = task
  s.live = s.live + 1
  s.alive[task] = true
  make_ready(task, ...)
  return task
end

--- The task running now, or nil outside tasks.
---@return viggle.Task|nil
function _M.current()
  local co = co_running()
  return co and by_co[co] or nil
end

-- Yields the current task until make_ready (or a timer) wakes it.
local function suspend(task)
  local r = { co_yield() }
  if task.cancelled then error(CANCEL, 0) end
  return unpack(r)
end

local function add_timer(task, at)
  task.sched.timers:push({ at, task, task.token })
end

--- Sleeps `seconds`: yields inside a task (and to nginx inside nginx), blocks outside.
---@param seconds number
---@return nil
function _M.sleep(seconds)
  local task = _M.current()
  if not task then
    if seconds > 0 then host_sleep(seconds) end
    return
  end
  add_timer(task, now() + max(seconds, 0))
  suspend(task)
end

-- Inside nginx, outside a task: the transfer runs on the thread while this
-- coroutine waits on nginx (the host wakes it when the thread is done).
local function host_transfer(r, tick, tick_every)
  local wake = host.waiter() -- raises where nginx cannot yield: before anything is sent
  local d, msg, code = get_driver()
  local ok = d and true
  if d then ok, msg, code = d.add(r) end
  if not ok then
    wake.done()
    return nil, msg, code
  end
  waiting[r] = wake
  local next_tick = tick and now() + tick_every
  while r:state() == "running" do
    wake.wait(next_tick and max(next_tick - now(), 0) or 1)
    if next_tick and r:state() == "running" and now() >= next_tick then
      if tick() == false then
        waiting[r] = nil
        d.remove(r)
        break
      end
      next_tick = now() + tick_every
    end
  end
  waiting[r] = nil
  wake.done()
  return r:result()
end

--- Performs a set-up request to its end. Inside a task it yields; outside it
--- blocks (inside nginx it yields to nginx). `tick` (optional) is called about
--- every `tick_every` seconds while the transfer runs (for progress);
--- returning false abandons the transfer.
--- Returns the request's result; failures (of the transfer, or of making a
--- multi or adding the request to it) as nil, message, code.
---@param r userdata a set-up request
---@param tick (fun(): boolean|nil)|nil
---@param tick_every number|nil seconds (default 0.25)
---@return table|nil response
---@return string|nil message
---@return string|nil code
function _M.transfer(r, tick, tick_every)
  local task = _M.current()
  tick_every = tick_every or 0.25
  if not task then
    if host then return host_transfer(r, tick, tick_every) end
    if not tick then return r:perform() end -- libcurl's own loop: the least CPU
    if not blocking_multi then
      local msg, code
      blocking_multi, msg, code = _M.new_multi()
      if not blocking_multi then return nil, msg, code end
    end
    local m = blocking_multi
    local ok, msg, code = m:add(r)
    if not ok then return nil, msg, code end
    local next_tick = tick and now() + tick_every
    while r:state() == "running" do
      m:perform()
      if r:state() ~= "running" then break end
      local t = m:timeout() or 1
      if next_tick then t = min(t, max(next_tick - now(), 0)) end
      m:poll(t)
      if next_tick and now() >= next_tick then
        if tick() == false then m:remove(r) break end
        next_tick = now() + tick_every
      end
    end
    return r:result()
  end
  local d, msg, code = get_driver()
  if not d then return nil, msg, code end
  local ok
  ok, msg, code = d.add(r)
  if not ok then return nil, msg, code end
  waiting[r] = task
  task.waiting_for = r
  -- No pcall around the yields (Lua 5.1 cannot yield across one): a
  -- cancelled task is cleaned up by Task:cancel, which removes the request.
  while r:state() == "running" do
    if tick then add_timer(task, now() + tick_every) end
    suspend(task)
    if tick and r:state() == "running" and tick() == false then
      waiting[r] = nil
      d.remove(r)
    end
  end
  waiting[r] = nil
  task.waiting_for = nil
  return r:result()
end

-- Wakes the tasks (and the plain waits) whose transfers finished.
local function dispatch(finished)
  if not finished then return end
  for i = 1, #finished do
    local r = finished[i]
    local w = waiting[r]
    if w then
      waiting[r] = nil
      if w.co then make_ready(w) else w.wake() end
    end
  end
end
_M.dispatch = dispatch

-- Moves due timers to the ready queue; returns the next due time or nil.
local function expire_timers(s, t)
  local timers = s.timers
  while timers.n > 0 do
    local e = timers[1]
    if e[1] > t then return e[1] end
    timers:pop()
    local task = e[2]
    if task.token == e[3] and task.status == "waiting" then make_ready(task) end
  end
  return nil
end

-- Resumes the ready tasks, in order, until `deadline` (if any) passes: the
-- rest keep their turn, before those that became ready meanwhile.
local function run_ready(s, deadline)
  local n = s.ready_n
  if n == 0 then return 0 end
  local batch = s.ready
  s.ready, s.ready_n = {}, 0
  for i = 1, n do
    local task = batch[i]
    if task.status == "ready" then resume(task) end
    if deadline and i < n and now() >= deadline then
      local rest, k = {}, 0
      for j = i + 1, n do k = k + 1 rest[k] = batch[j] end
      for j = 1, s.ready_n do k = k + 1 rest[k] = s.ready[j] end
      s.ready, s.ready_n = rest, k
      if driver then driver.wake() end -- a host loop (viggle.uv) turns again soon
      return i
    end
  end
  return n
end

--- Seconds until the scheduler next has work (timers), or nil.
---@return number|nil
function _M.next_timer()
  local timers = sched().timers
  return timers.n > 0 and timers[1][1] or nil
end

-- step, run and a join outside a task drive the scheduler: never from inside
-- a task (a callback of one included), which would resume tasks under it.
local function not_in_task(name)
  if running or _M.current() then
    error(name .. " cannot be called inside a task (or a callback it runs): it would resume the task under it", 3)
  end
end

-- Advances transfers and wakes the tasks whose transfers finished.
local function drive()
  if in_flight() > 0 then dispatch(driver.drive()) end
end

--- One turn: collect finished transfers, wake due tasks, run what is ready.
--- Waits at most `timeout` seconds (0: never blocks) when nothing is ready.
--- Running tasks stops once the step budget (viggle.configure{step_budget},
--- default 2 ms) is spent; the rest run at the next step. The transfers
--- themselves never run here: they move on the C core's thread meanwhile.
--- Raises when called inside a task.
---@param timeout number|nil seconds to wait at most when nothing is ready (default 0)
---@return integer live tasks
function _M.step(timeout)
  not_in_task("viggle.step")
  timeout = timeout or 0
  local s = sched()
  local t0 = now()
  drive()
  local next_at = expire_timers(s, t0)
  local ran = run_ready(s, t0 + step_budget)
  if ran == 0 and s.ready_n == 0 and timeout > 0 and s.live > 0 and (next_at or in_flight() > 0) then
    local t = timeout
    if next_at then t = min(t, max(next_at - now(), 0)) end
    if host then host.wait(s, t)
    elseif driver then driver.wait(t)
    else host_sleep(t) end
    drive()
    local t1 = now()
    expire_timers(s, t1)
    run_ready(s, t1 + step_budget)
  end
  return s.live
end

-- Every task of `s` is suspended on something only another task can give.
local function stuck(s)
  if s.ready_n > 0 or s.timers.n > 0 then return false end
  for _, w in pairs(waiting) do
    if w.sched == s then return false end
  end
  return true
end
local STUCK = "every remaining task is waiting on another: nothing can progress"

--- Runs until every task has ended. Returns true, or false and the error of
--- the first task that raised during this run and that nobody joined.
--- Raises when called inside a task.
---@return boolean ok
---@return any err
function _M.run()
  not_in_task("viggle.run")
  local s = sched()
  local outer = s.run_failures
  local mine = {}
  s.run_failures = mine
  while s.live > 0 do
    if stuck(s) then
      s.run_failures = outer
      return false, errors.new("cancelled", STUCK)
    end
    _M.step(huge)
  end
  s.run_failures = outer
  for _, t in ipairs(mine) do
    if not t.joined then return false, t.error end
  end
  return true
end


-- ---- task methods -----------------------------------------------------------

--- Cancels the task: its current wait ends, the transfer it was waiting for
--- is abandoned, and the task ends as "cancelled".
---@return boolean cancelled false when the task had already ended
function Task:cancel()
  if self.status == "done" or self.status == "failed" or self.status == "cancelled" then return false end
  self.cancelled = true
  local r = self.waiting_for
  if r and r:state() == "running" then
    waiting[r] = nil
    driver.remove(r)
  end
  if co_running() == self.co then error(CANCEL, 0) end
  make_ready(self)
  return true
end

--- Waits for the task to end; returns true, results... or false, err.
--- Inside a task it yields; outside it runs the scheduler meanwhile.
---@return boolean ok
---@return any ... the results of the task, or its error
function Task:join()
  self.joined = true
  while self.status ~= "done" and self.status ~= "failed" and self.status ~= "cancelled" do
    local me = _M.current()
    if me then
      if me == self then error("a task cannot join itself", 2) end
      self.joiners = self.joiners or {}
      self.joiners[#self.joiners + 1] = me
      suspend(me)
    else
      not_in_task("task:join")
      if stuck(self.sched) then return false, errors.new("cancelled", STUCK) end
      _M.step(huge)
    end
  end
  if self.status == "done" then return true, unpack(self.results, 1, self.results.n) end
  return false, self.error
end

--- "ready", "running", "waiting", "done", "failed" or "cancelled".
---@return string
function Task:state() return self.status end

_M.Task = Task
return _M
