-- nginx with its Lua module as the host (OpenResty's LuaJIT, Debian's
-- libnginx-mod-http-lua): viggle loads inside a request handler of an nginx
-- of our own (spec/hosts/nginx.conf.in, handlers in spec/hosts/nginx_app.lua,
-- ONE worker), which polls the mock (another nginx). While a request awaits
-- a job, /ping on the same worker shows what blocks the worker and for how
-- long. Only under LuaJIT: nginx loads build/jit/viggle/core.so.
if type(jit) ~= "table" then return end

local cjson = require("cjson")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")
local nginx_host = require("spec.hosts.nginx_host")

local now, sleep, fmt = core.now, core.sleep, string.format

local support = require("spec.support")
local exists = support.exists

local function ms(s) return fmt("%.1f ms", s * 1000) end

describe("nginx host (one worker, viggle in content_by_lua)", function()
  local m, h

  setup(function()
    assert(exists(support.build_dir("jit") .. "/viggle/core.so"), "build/jit/viggle/core.so is missing: make LUA=jit")
    assert(exists("/usr/lib/nginx/modules/ngx_http_lua_module.so"), "the nginx Lua module is missing "
      .. "(Debian: libnginx-mod-http-lua)")
    m = assert(mock_server.start())
    h = assert(nginx_host.start({ mock_url = m.base_url }))
  end)
  teardown(function()
    if h then h:stop() end
    if m then m:stop() end
  end)
  before_each(function() m:reset() end)

  -- GET path in the background; meanwhile GET /ping every `every` seconds
  -- (from one curl process). Returns the decoded answer of path and the pings
  -- {handled, latency, pid}, `handled` on core.now()'s clock (the handlers use
  -- the same CLOCK_MONOTONIC).
  local function probe(path, every, max_time)
    local pinger = nginx_host.pinger(h, every)
    sleep(0.05)
    local file = h:get_bg(path, max_time or 20)
    local deadline = now() + (max_time or 20) + 5
    while not nginx_host.done(file) and now() < deadline do sleep(0.02) end
    sleep(0.05)
    local pings = pinger:stop()
    local text = nginx_host.read(file)
    assert(text, path .. ": no answer\n" .. h:error_log())
    return cjson.decode(text), pings
  end

  -- the pings that nginx handled while `r` (an answer with t_start, t_end) ran
  local function during(r, pings)
    local inside = {}
    for _, p in ipairs(pings) do
      if p.handled > r.t_start and p.handled < r.t_end then inside[#inside + 1] = p end
    end
    return inside
  end

  local function worst(pings)
    local w = 0
    for _, p in ipairs(pings) do if p.latency > w then w = p.latency end end
    return w
  end

  -- start times of the status polls of `id`, from the mock's log, and the
  -- shortest pause between the end of one and the start of the next
  local function polls(id)
    local list, min_pause, prev_end = {}, math.huge, nil
    for _, r in ipairs(m:log()) do
      if r.uri == "/api/render/" .. id then
        list[#list + 1] = r
        if prev_end then min_pause = math.min(min_pause, r.t - prev_end) end
        prev_end = r.t_end
      end
    end
    return list, min_pause
  end

  it("loads viggle in a request handler and answers a status call", function()
    local id = m:job({ id = "ngx_status" })
    local body = (assert(h:get("/status?id=" .. id)))
    local r = cjson.decode(body)
    assert.are.equal("ngx_status", r.job_id)
    assert.are.equal("queued", r.status)
  end)

  it("client:await: the waits between polls yield, /ping on the same worker answers in < 100 ms", function()
    local id = m:job({ id = "ngx_await", advance = "time", step = 0.3 }) -- complete after 1.5 s
    local r, pings = probe("/await?id=" .. id .. "&interval=0.2", 0.1)
    assert.are.equal("ngx_await", r.job_id)
    assert.are.equal("complete", r.status)
    assert.is_true(r.t_end - r.t_start > 1.2, fmt("await took %.2f s", r.t_end - r.t_start))
    local inside = during(r, pings)
    assert.is_true(#inside >= 5, "pings answered during the await: " .. #inside)
    for _, p in ipairs(inside) do
      assert.are.equal(r.pid, p.pid) -- the same (only) worker
      assert.is_true(p.latency < 0.1, "/ping took " .. ms(p.latency))
    end
    -- every pause between polls is the whole interval, however busy the worker
    local list, min_pause = polls(id)
    assert.is_true(#list >= 6 and #list <= 10, "polls: " .. #list)
    assert.is_true(min_pause > 0.17, "shortest pause between polls: " .. ms(min_pause))
  end)

  it("client:await in several concurrent requests on the one worker: each completes, /ping stays fast", function()
    local ids = m:jobs({ count = 4, id = "ngx_conc", advance = "time", step = 0.3 })
    local files = {}
    for i = 1, 3 do files[i] = h:get_bg("/await?id=" .. ids[i] .. "&interval=0.2") end
    local r, pings = probe("/await?id=" .. ids[4] .. "&interval=0.2", 0.1)
    assert.are.same({ "ngx_conc-4", "complete" }, { r.job_id, r.status })
    local deadline = now() + 10
    for i = 1, 3 do
      while not nginx_host.done(files[i]) and now() < deadline do sleep(0.05) end
      local f = assert(io.open(files[i], "rb"))
      local other = cjson.decode(f:read("*a"))
      f:close()
      os.remove(files[i])
      assert.are.same({ ids[i], "complete" }, { other.job_id, other.status })
      assert.are.equal(r.pid, other.pid)
    end
    local inside = during(r, pings)
    assert.is_true(#inside >= 5, "pings answered during the awaits: " .. #inside)
    assert.is_true(worst(inside) < 0.1, "slowest /ping: " .. ms(worst(inside)))
  end)

  it("a status call whose answer takes 0.2 s holds no one: /ping answers within 20 ms meanwhile", function()
    m:config({ delay = 0.2 })
    local one = cjson.decode((assert(h:get("/status?id=" .. m:job({ id = "ngx_one" })))))
    assert.are.same({ "ngx_one", "queued" }, { one.job_id, one.status })
    assert.is_true(one.seconds >= 0.2 and one.seconds < 0.4, "one status call: " .. ms(one.seconds))

    local id = m:job({ id = "ngx_slow", advance = "time", step = 0.3 })
    local r, pings = probe("/await?id=" .. id .. "&interval=0.2", 0.03)
    assert.are.equal("complete", r.status)
    local inside = during(r, pings)
    assert.is_true(#inside >= 15, "pings answered during the await: " .. #inside)
    assert.is_true(worst(inside) < 0.02, "slowest /ping: " .. ms(worst(inside)))
    -- the sleep after a 0.2 s transfer is still the whole interval
    local _, min_pause = polls(id)
    assert.is_true(min_pause > 0.17, "shortest pause between polls: " .. ms(min_pause))
  end)

  it("the client's timeout ends a transfer that takes too long, and the worker answers meanwhile", function()
    local id = m:job({ id = "ngx_stuck" })
    m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 3 })
    local r, pings = probe("/status?id=" .. id .. "&client_timeout=0.3&retries=0", 0.03)
    assert.are.equal("timeout", r.kind)
    assert.is_true(r.seconds >= 0.29 and r.seconds < 0.6, "the status call took " .. ms(r.seconds))
    local inside = during(r, pings)
    assert.is_true(#inside >= 3, "pings answered during the call: " .. #inside)
    assert.is_true(worst(inside) < 0.02, "slowest /ping: " .. ms(worst(inside)))
  end)

  it("a call in log_by_lua raises an error that names the phase and what to do", function()
    assert.is_string((h:get("/in_log?id=" .. m:job({ id = "ngx_log" }))))
    local raised
    for _ = 1, 50 do -- the log phase runs after the answer went out
      raised = cjson.decode((assert(h:get("/in_log_result")))).raised
      if raised then break end
      sleep(0.02)
    end
    assert.are.equal("viggle: cannot wait for a transfer in nginx's log phase (log_by_lua*), where the Lua "
      .. "module cannot yield; call viggle from a rewrite, access or content handler, or run it in a timer: "
      .. "ngx.timer.at(0, function() ... end)", raised)
    for _, r in ipairs(m:log()) do assert.are_not.equal("/api/render/ngx_log", r.uri) end -- nothing was sent
  end)

  it("tasks inside one request: viggle.spawn + viggle.run, and await_all, work and their waits yield", function()
    local log_before = #h:error_log()
    local ids = m:jobs({ count = 3, id = "ngx_task", advance = "time", step = 0.3 })
    local r, pings = probe("/tasks?ids=" .. table.concat(ids, ",") .. "&interval=0.2", 0.1)
    assert.is_true(r.run_ok, tostring(r.run_err))
    for i, id in ipairs(ids) do
      assert.are.same({ job_id = id, status = "complete" }, r.results[i])
      assert.is_true(r.in_task[i])
    end
    local inside = during(r, pings)
    assert.is_true(#inside >= 5, "pings answered during the tasks: " .. #inside)
    assert.is_true(worst(inside) < 0.1, "slowest /ping: " .. ms(worst(inside)))

    ids = m:jobs({ count = 3, id = "ngx_all", advance = "time", step = 0.3 })
    local a, apings = probe("/await_all?ids=" .. table.concat(ids, ",") .. "&interval=0.2", 0.1)
    assert.are.equal(3, a.complete)
    for i, id in ipairs(ids) do assert.are.same({ job_id = id, status = "complete" }, a.results[i]) end
    local ainside = during(a, apings)
    assert.is_true(#ainside >= 5, "pings answered during await_all: " .. #ainside)
    assert.is_true(worst(ainside) < 0.1, "slowest /ping: " .. ms(worst(ainside)))
    -- nothing in the error log: no Lua error, and no "ngx.sleep(0) called without delayed events
    -- patch" warning (a scheduler wait shorter than nginx's 1 ms timer granularity)
    assert.are.equal("", h:error_log():sub(log_before + 1))
  end)

  it("two requests on the one worker both using await_all at once: both complete", function()
    local a = m:jobs({ count = 3, id = "ngx_alla", advance = "time", step = 0.3 })
    local b = m:jobs({ count = 3, id = "ngx_allb", advance = "time", step = 0.2 })
    local fb = h:get_bg("/await_all?ids=" .. table.concat(b, ",") .. "&interval=0.2", 20)
    local fc = h:get_bg("/tasks?ids=" .. table.concat(b, ",") .. "&interval=0.2", 20)
    local r, pings = probe("/await_all?ids=" .. table.concat(a, ",") .. "&interval=0.2", 0.05)
    assert.are.equal(3, r.complete)
    for i, id in ipairs(a) do assert.are.same({ job_id = id, status = "complete" }, r.results[i]) end
    local deadline = now() + 15
    for _, f in ipairs({ fb, fc }) do
      while not nginx_host.done(f) and now() < deadline do sleep(0.05) end
    end
    local rb = cjson.decode((assert(nginx_host.read(fb), "no answer\n" .. h:error_log())))
    for i, id in ipairs(b) do assert.are.same({ job_id = id, status = "complete" }, rb.results[i]) end
    local rc = cjson.decode((assert(nginx_host.read(fc))))
    assert.is_true(rc.run_ok, tostring(rc.run_err))
    for i, id in ipairs(b) do assert.are.same({ job_id = id, status = "complete" }, rc.results[i]) end
    assert.are.equal(r.pid, rb.pid)
    assert.is_true(worst(during(r, pings)) < 0.05, "slowest /ping: " .. ms(worst(during(r, pings))))
    assert.are.equal("", h:error_log():gsub("[^\n]*%[notice%][^\n]*\n", ""))
  end)

  -- /tasks in a fresh request: both jobs complete, run() returns true
  local function tasks_work(prefix)
    local ids = m:jobs({ count = 2, id = prefix })
    local r = cjson.decode((assert(h:get("/tasks?ids=" .. table.concat(ids, ",") .. "&interval=0.02", 10),
      "/tasks failed:\n" .. h:error_log())))
    assert.is_true(r.run_ok, tostring(r.run_err))
    for i, id in ipairs(ids) do assert.are.same({ job_id = id, status = "complete" }, r.results[i]) end
  end

  it("an await_all outside a task whose jobs end within a second leaves the worker's tasks free", function()
    local log_before = #h:error_log()
    local ids = m:jobs({ count = 2, id = "ngx_quick" }) -- 6 polls each, 0.02 s apart: done in ~0.15 s
    local a = cjson.decode((assert(h:get("/await_all?ids=" .. table.concat(ids, ",") .. "&interval=0.02", 10))))
    assert.are.equal(2, a.complete)
    assert.is_true(a.t_end - a.t_start < 1, "await_all took " .. ms(a.t_end - a.t_start))
    tasks_work("ngx_after_all") -- a request of its own, on the same worker
    tasks_work("ngx_after_all2")
    assert.are.equal("", h:error_log():sub(log_before + 1))
  end)

  it("a handler that raises after viggle.spawn does not wedge the worker", function()
    assert.is_nil((h:get("/spawn_raise", 5))) -- a 500
    assert.matches("the handler broke after viggle.spawn", h:error_log())
    tasks_work("ngx_after_raise")
    assert.is_nil((h:get("/spawn_raise", 5)))
    tasks_work("ngx_after_raise2")
  end)

  it("several jobs per request in light threads (ngx.thread + client:await), two such requests at once", function()
    local a = m:jobs({ count = 3, id = "ngx_tha", advance = "time", step = 0.3 })
    local b = m:jobs({ count = 3, id = "ngx_thb", advance = "time", step = 0.2 })
    local fb = h:get_bg("/threads?ids=" .. table.concat(b, ",") .. "&interval=0.2")
    local r, pings = probe("/threads?ids=" .. table.concat(a, ",") .. "&interval=0.2", 0.1)
    for i, id in ipairs(a) do assert.are.same({ job_id = id, status = "complete" }, r.results[i]) end
    local deadline = now() + 10
    while not nginx_host.done(fb) and now() < deadline do sleep(0.05) end
    local f = assert(io.open(fb, "rb"))
    local rb = cjson.decode(f:read("*a"))
    f:close()
    os.remove(fb)
    for i, id in ipairs(b) do assert.are.same({ job_id = id, status = "complete" }, rb.results[i]) end
    local inside = during(r, pings)
    assert.is_true(#inside >= 5, "pings answered meanwhile: " .. #inside)
    assert.is_true(worst(inside) < 0.1, "slowest /ping: " .. ms(worst(inside)))
  end)

  -- The pings sent every 10 ms while `load()` runs: their latencies, sorted.
  local function pinged_during(load)
    local pinger = nginx_host.pinger(h, 0.01)
    sleep(0.1)
    local t0 = now()
    load()
    local seconds = now() - t0
    sleep(0.1)
    local lat = {}
    for _, p in ipairs(pinger:stop()) do lat[#lat + 1] = p.latency end
    table.sort(lat)
    assert.is_true(#lat >= seconds * 20, fmt("%d pings in %.1f s", #lat, seconds)) -- asked: 100 a second
    return lat
  end
  local function pct(lat, q) return lat[math.max(1, math.ceil(#lat * q))] end

  local function wait_all(files)
    local deadline = now() + 60
    for _, f in ipairs(files) do
      while not nginx_host.done(f) and now() < deadline do sleep(0.05) end
    end
  end

  it("twenty plain awaits (API answering after 1 s) and two 200 MB downloads at once: /ping stays fast",
    function()
    local size = tonumber(os.getenv("VIGGLE_SPEC_BIG") or "") or 200 * 1024 * 1024
    local big = m:big(size)
    m:config({ delay = 1 })
    -- The same load without viggle (curl, outside the worker): what this
    -- machine's own scheduling does to /ping (2 cores, shared).
    local base = pinged_during(function()
      os.execute("for i in $(seq 20); do curl -s -o /dev/null " .. m.base_url .. "/api/render/none & done; "
        .. "curl -s -o /dev/null " .. m.cdn_base .. "/video/big.mp4 & curl -s -o /dev/null " .. m.cdn_base
        .. "/video/big.mp4 & wait")
    end)
    local ids = m:jobs({ count = 20, id = "ngx_many", advance = "time", step = 0.1 })
    local files, outs = {}, {}
    local lat = pinged_during(function()
      for i = 1, 20 do files[i] = h:get_bg("/await?id=" .. ids[i] .. "&interval=0.2", 60) end
      for i = 1, 2 do
        outs[i] = os.tmpname()
        files[20 + i] = h:get_bg("/download?url=" .. m.cdn_base .. "/video/big.mp4&path=" .. outs[i], 60)
      end
      wait_all(files)
    end)
    for i = 1, 20 do
      local r = cjson.decode((assert(nginx_host.read(files[i]), "await " .. i .. ": no answer\n" .. h:error_log())))
      assert.are.same({ ids[i], "complete" }, { r.job_id, r.status })
    end
    for i = 1, 2 do
      local r = cjson.decode((assert(nginx_host.read(files[20 + i]), "download " .. i .. ": no answer")))
      assert.are.equal(size, r.bytes, tostring(r.err))
      local same = os.execute("cmp -s " .. outs[i] .. " " .. big)
      assert.is_true(same == true or same == 0, "download " .. i .. " differs from the served file")
      os.remove(outs[i])
    end
    -- A transfer that held the worker would hold a ping for a whole API
    -- answer (1 s) or a whole download: none comes near. Otherwise /ping
    -- fares as it does under the same load without viggle: its 90th
    -- percentile within 20 ms, or within 5 ms of that load's.
    local summary = fmt("/ping p50 %s p90 %s max %s (without viggle: p50 %s p90 %s max %s)", ms(pct(lat, 0.5)),
      ms(pct(lat, 0.9)), ms(lat[#lat]), ms(pct(base, 0.5)), ms(pct(base, 0.9)), ms(base[#base]))
    assert.is_true(lat[#lat] < 0.5, summary)
    assert.is_true(pct(lat, 0.9) < math.max(0.02, pct(base, 0.9) + 0.005), summary)
  end)
end)
