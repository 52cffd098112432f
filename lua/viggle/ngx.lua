--- viggle inside nginx (OpenResty's Lua module): how the scheduler waits
--- there, and which request its tasks belong to. viggle.loop loads it only
--- when the global `ngx` exists. See docs/architecture.md.
local core = require("viggle.core")

local type, pcall, error, setmetatable = type, pcall, error, setmetatable
local core_sleep = core.sleep

local _M = {}

-- The phases where ngx.sleep may yield to nginx.
local YIELDING = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
                   ssl_session_fetch = true }

local function ngx_api()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and ngx.get_phase then return ngx end
end

-- The request running now (its ngx.ctx, one table per request), or nil.
local function current_request()
  local ngx = ngx_api()
  if not ngx then return nil end
  local ok, req = pcall(function() return ngx.ctx end)
  if ok and type(req) == "table" then return req end
end

-- Requests now parked in sleep (they come back to the scheduler).
local parked = setmetatable({}, { __mode = "k" })

--- A wait: yields to nginx with ngx.sleep in the phases where that is
--- allowed, so the worker serves other requests meanwhile; elsewhere a real
--- sleep. (A libcurl transfer itself still blocks.)
---@param seconds number
---@return nil
function _M.sleep(seconds)
  local ngx = ngx_api()
  if ngx and ngx.sleep and YIELDING[ngx.get_phase()] then
    local req = current_request()
    if req then parked[req] = (parked[req] or 0) + 1 end
    ngx.update_time() -- the clock is behind after a transfer
    ngx.sleep(seconds + 0.001) -- ms granularity, and never 0
    if req then parked[req] = parked[req] > 1 and parked[req] - 1 or nil end
    return
  end
  core_sleep(seconds)
end

-- The request that owns the scheduler's tasks.
local owner

--- Called before a task is made. The scheduler is one per worker, and a
--- coroutine belongs to the request that made it: tasks of two requests at
--- once would resume each other's coroutines (and crash the worker). A
--- request whose tasks are waiting on the scheduler (parked in `sleep`) keeps
--- it, and a second request is refused; a request that left its tasks behind
--- (it raised, or returned without running them) loses them: `abandon` drops
--- them, and the scheduler is the new request's.
---@param live integer tasks not yet ended
---@param abandon fun() ends every live task without resuming it
---@return nil
function _M.claim(live, abandon)
  local req = current_request()
  if not req then return end
  if live > 0 and owner and req ~= owner then
    if parked[owner] then
      error("viggle: another request of this nginx worker has tasks running; "
            .. "inside nginx follow several jobs with ngx.thread.spawn and client:await", 3)
    end
    abandon()
  end
  owner = req
end

return _M
