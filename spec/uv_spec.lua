-- The libuv driver (luv): 50 jobs awaited while the host's own 10 ms timer
-- keeps firing; its largest gap shows the host loop never stalls.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")
local has_luv, uv = pcall(require, "luv")

describe("viggle.uv (luv host loop)", function()
  local m, c, driver

  setup(function()
    assert(has_luv, "lua-luv is needed for this spec")
    m = assert(mock_server.start())
    driver = require("viggle.uv").install(uv)
  end)
  teardown(function()
    if driver then driver.uninstall() end
    if m then m:stop() end
  end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
  end)

  it("awaits 50 jobs while a 10 ms host timer never waits 100 ms", function()
    m:config({ delay = 0.03 })
    local ids = m:jobs({ count = 50, id = "uvjob" })
    local results, summary
    local progress_calls = 0
    viggle.spawn(function()
      results, summary = c:await_all(ids, { interval = 0.02, on_progress = function()
        progress_calls = progress_calls + 1
      end })
    end)
    local last, worst, ticks = core.now(), 0, 0
    local t = uv.new_timer()
    local t0 = core.now()
    t:start(10, 10, function()
      local n = core.now()
      if n - last > worst then worst = n - last end
      last, ticks = n, ticks + 1
      if results or n - t0 > 20 then
        t:stop()
        t:close()
      end
    end)
    uv.run()
    assert.is_table(results, "await_all did not finish within 20 s")
    assert.are.equal(50, summary.complete)
    for i, id in ipairs(ids) do assert.are.equal(id, results[i].job_id) end
    assert.are.equal(50 * 6, progress_calls)
    assert.is_true(ticks > 20, "ticks: " .. ticks)
    assert.is_true(worst < 0.1, string.format("largest gap between ticks: %.1f ms", worst * 1000))
  end)

  it("sleeps in tasks on uv timers and reports a task's failure", function()
    local order = {}
    viggle.spawn(function() viggle.sleep(0.05) order[#order + 1] = "b" end)
    viggle.spawn(function() viggle.sleep(0.01) order[#order + 1] = "a" end)
    local bad = viggle.spawn(function() viggle.sleep(0.02) error("late failure") end)
    local reported = {}
    local previous = viggle.on_task_error(function(err, task) reported[#reported + 1] = { err, task } end)
    uv.run()
    viggle.on_task_error(previous)
    assert.are.same({ "a", "b" }, order)
    assert.are.equal("failed", bad:state())
    -- never lost: the handler heard of it, once, with the task
    assert.are.equal(1, #reported)
    assert.matches("late failure", tostring(reported[1][1]))
    assert.are.equal(bad, reported[1][2])
  end)

  it("refuses an unknown option to install, naming the closest one", function()
    local ok, err = pcall(require("viggle.uv").install, uv, { max_conects = 2 })
    assert.is_false(ok)
    assert.matches("unknown option 'max_conects' to 'install' %(did you mean 'max_connects'%?%)", err)
  end)

  it("by default a task that raises under uv is reported on stderr", function()
    local support = require("spec.support")
    local dir = assert(support.tempdir("viggle-uv"))
    support.write_file(dir .. "/t.lua", [[
      local uv = require("luv")
      local viggle = require("viggle")
      require("viggle.uv").install(uv)
      viggle.spawn(function() viggle.sleep(0.01) error("nobody joins me") end)
      uv.run()
      io.stdout:write("loop ended\n")]])
    local rc, out = support.sh(string.format("cd %s && LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' "
      .. "LUA_CPATH=%s %s %s", support.q(support.root), support.q(support.build_dir() .. "/?.so;;"),
      support.interp, support.q(dir .. "/t.lua")))
    os.execute("rm -rf " .. support.q(dir))
    assert.are.equal(0, rc, out)
    assert.matches("viggle: a task raised an error: [^\n]*nobody joins me", out)
    assert.matches("loop ended", out)
  end)

  it("tasks that a turn's step budget left over run at the next turn", function()
    viggle.configure({ step_budget = 0.0005 })
    finally(function() viggle.configure({ step_budget = 0.002 }) end)
    local ran = 0
    for _ = 1, 40 do
      viggle.spawn(function()
        local t = core.now()
        while core.now() - t < 0.0002 do end
        ran = ran + 1
      end)
    end
    uv.run()
    assert.are.equal(40, ran)
  end)

  it("a failing transfer ends the await with the right kind", function()
    local id = m:job({ id = "job_gone" })
    m:fault({ match = "/api/render/" .. id, kind = "status", status = 404, body = '{"detail":"Job not found"}' })
    local err
    viggle.spawn(function() local _, e = c:await(id, { interval = 0.01 }) err = e end)
    uv.run()
    assert.are.equal("not_found", err.kind)
  end)
end)

describe("viggle.uv waits outside a task", function()
  local driver
  setup(function() driver = require("viggle.uv").install(uv) end)
  teardown(function() if driver then driver.uninstall() end end)

  it("join from plain code turns the uv loop instead of spinning", function()
    local task = viggle.spawn(function() viggle.sleep(0.05) return "slept" end)
    local t0 = core.now()
    local cpu0 = os.clock()
    local ok, v = task:join()
    assert.is_true(ok)
    assert.are.equal("slept", v)
    assert.is_true(core.now() - t0 >= 0.045)
    assert.is_true(os.clock() - cpu0 < 0.04, "join burned CPU while waiting")
  end)

  it("is refused inside a uv callback, with a message that says what to do", function()
    local task = viggle.spawn(function() viggle.sleep(0.05) end)
    local err
    local t = uv.new_timer()
    t:start(1, 0, function()
      t:close()
      local ok, e = pcall(function() return task:join() end)
      if not ok then err = e end
    end)
    uv.run()
    assert.matches("inside viggle.spawn", tostring(err))
  end)
end)

-- viggle.configure applies to the multi of the uv driver too, whichever of
-- configure and install comes first.
describe("viggle.configure under viggle.uv", function()
  local m, driver

  setup(function() m = assert(mock_server.start()) end)
  teardown(function()
    if driver then driver.uninstall() end
    viggle.configure({})
    if m then m:stop() end
  end)
  before_each(function()
    m:reset()
    m:config({ delay = 0.05 }) -- so the ten polls overlap
  end)

  -- 10 awaits at once in tasks, driven by uv.run; the connections the mock saw
  local function ten_awaits()
    local c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
    local ids = m:jobs({ count = 10, id = "uvcap" })
    local done = 0
    for _, id in ipairs(ids) do
      viggle.spawn(function()
        local job = c:await(id, { interval = 0.01 })
        if job and job.status == "complete" then done = done + 1 end
      end)
    end
    uv.run()
    assert.are.equal(10, done)
    return m:connections("api")
  end

  it("max_host_connections set before install caps the uv driver's connections", function()
    viggle.configure({ max_host_connections = 2 })
    driver = require("viggle.uv").install(uv)
    local conns = ten_awaits()
    assert.is_true(conns <= 2, "connections: " .. conns)
  end)

  it("set after install (nothing in flight) caps them too, and {} lifts the cap", function()
    viggle.configure({})
    assert.is_true(ten_awaits() > 2) -- without a cap, ten polls at once open more than two
    m:reset()
    m:config({ delay = 0.05 })
    viggle.configure({ max_host_connections = 2 })
    local conns = ten_awaits()
    assert.is_true(conns <= 2, "connections: " .. conns)
  end)
end)
