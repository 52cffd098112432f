-- Request handlers for spec/hosts/nginx.conf.in: viggle inside nginx's Lua
-- module. Every answer is one JSON object; times are viggle.core.now()
-- (CLOCK_MONOTONIC, the same clock the spec reads), in seconds.
-- Query arguments: id / ids (comma-separated), interval, timeout (overall,
-- for await), client_timeout (the client's per-request timeout), retries.
local ngx = ngx -- luacheck: ignore 113
local cjson = require("cjson.safe")
local viggle = require("viggle")
local core = require("viggle.core")

local now = core.now
local _M = {}

local function args()
  local a = ngx.req.get_uri_args()
  return {
    id = a.id,
    ids = a.ids and (function()
      local t = {}
      for id in a.ids:gmatch("[^,]+") do t[#t + 1] = id end
      return t
    end)() or {},
    interval = tonumber(a.interval) or 0.2,
    timeout = tonumber(a.timeout) or 30,
    client_timeout = tonumber(a.client_timeout) or 30,
    retries = tonumber(a.retries),
  }
end

local function client(a)
  return assert(viggle.new({ base_url = ngx.var.viggle_base_url, timeout = a.client_timeout,
                             connect_timeout = math.min(a.client_timeout, 10) }))
end

local function job_or_err(job, err)
  if job then return { job_id = job.job_id, status = job.status } end
  return { err = tostring(err), kind = err and err.kind }
end

local function answer(t)
  t.pid = ngx.worker.pid()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

function _M.ping()
  answer({ pong = true, t = now() })
end

function _M.await()
  local a = args()
  local c = client(a)
  local t0 = now()
  local job, err = c:await(a.id, { interval = a.interval, timeout = a.timeout })
  local r = job_or_err(job, err)
  r.t_start, r.t_end = t0, now()
  answer(r)
end

function _M.status()
  local a = args()
  local c = client(a)
  local t0 = now()
  local job, err = c:status(a.id, { retries = a.retries or 0 })
  local r = job_or_err(job, err)
  r.t_start, r.t_end = t0, now()
  r.seconds = r.t_end - t0
  answer(r)
end

-- Tasks inside one request: one viggle task per id, then viggle.run().
function _M.tasks()
  local a = args()
  local c = client(a)
  local t0 = now()
  local results, in_task = {}, {}
  for i, id in ipairs(a.ids) do
    viggle.spawn(function()
      in_task[i] = require("viggle.loop").current() ~= nil
      results[i] = job_or_err(c:await(id, { interval = a.interval, timeout = a.timeout }))
    end)
  end
  local ok, err = viggle.run()
  answer({ run_ok = ok, run_err = err and tostring(err), results = results, in_task = in_task,
           t_start = t0, t_end = now() })
end

-- Several jobs in one request without viggle tasks: one ngx light thread per
-- id, each a plain client:await (its waits are ngx.sleep). Safe in any number
-- of concurrent requests, unlike tasks (one scheduler per worker).
function _M.threads()
  local a = args()
  local c = client(a)
  local t0 = now()
  local threads, results = {}, {}
  for i, id in ipairs(a.ids) do
    threads[i] = ngx.thread.spawn(function() return c:await(id, { interval = a.interval, timeout = a.timeout }) end)
  end
  for i, th in ipairs(threads) do
    local ok, job, err = ngx.thread.wait(th)
    results[i] = ok and job_or_err(job, err) or { err = tostring(job) }
  end
  answer({ results = results, t_start = t0, t_end = now() })
end

function _M.download()
  local a = ngx.req.get_uri_args()
  local c = client(args())
  local t0 = now()
  local path, info = c:download(a.url, a.path, { overwrite = true })
  answer({ path = path, bytes = path and info.bytes, err = not path and tostring(info) or nil,
           t_start = t0, t_end = now() })
end

-- In log_by_lua: a status call must raise (nothing can yield there).
function _M.status_in_log()
  local c = client(args())
  local ok, err = pcall(c.status, c, ngx.var.arg_id or "job_x")
  ngx.shared.viggle_spec:set("in_log", ok and "returned" or tostring(err))
end

function _M.in_log_result()
  answer({ raised = ngx.shared.viggle_spec:get("in_log") })
end

-- A handler that raises after viggle.spawn: its task is left behind.
function _M.spawn_raise()
  viggle.spawn(function() viggle.sleep(0.01) end)
  error("the handler broke after viggle.spawn")
end

function _M.await_all()
  local a = args()
  local c = client(a)
  local t0 = now()
  local results, summary = c:await_all(a.ids, { interval = a.interval, timeout = a.timeout })
  local out = {}
  for i, r in ipairs(results) do
    out[i] = viggle.is_error(r) and job_or_err(nil, r) or job_or_err(r)
  end
  answer({ results = out, complete = summary.complete, t_start = t0, t_end = now() })
end

return _M
