-- The scheduler's timers and its connections, as a user meets them: how
-- long a sleep lasts, and how many connections a burst of waits opens.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")

describe("the scheduler", function()
  local m, c, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/loop"
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function()
    viggle.configure({})
    if m then m:stop() end
  end)
  before_each(function()
    m:reset()
    viggle.configure({}) -- a fresh driver: nothing kept from another spec
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
  end)

  it("sleeps the time asked outside a task, fractions included", function()
    local t0 = core.now()
    viggle.sleep(0.3)
    local took = core.now() - t0
    assert.is_true(took >= 0.29 and took < 0.8, string.format("%.3f s", took))
  end)

  it("a sleep after a download with progress lasts its time: no stale timer cuts it short", function()
    local id = m:job({ id = "job_dl" })
    local done = assert(c:await(id, { interval = 0.001 }))
    local took, calls
    local task = viggle.spawn(function()
      calls = 0
      assert(c:download(done, dir .. "/v.mp4", { overwrite = true, on_progress = function() calls = calls + 1 end }))
      local t0 = core.now()
      viggle.sleep(1)
      took = core.now() - t0
    end)
    assert(viggle.run())
    assert.are.equal("done", task:state())
    assert.is_true(calls >= 1)
    assert.is_true(took >= 0.98 and took < 1.6, string.format("%.3f s", took))
  end)

  it("timers in tasks fire in order and never early", function()
    local order, late = {}, {}
    for _, s in ipairs({ 0.3, 0.1, 0.5, 0.2, 0.4 }) do
      viggle.spawn(function()
        local t0 = core.now()
        viggle.sleep(s)
        late[#late + 1] = core.now() - t0 - s
        order[#order + 1] = s
      end)
    end
    assert(viggle.run())
    assert.are.same({ 0.1, 0.2, 0.3, 0.4, 0.5 }, order)
    for _, d in ipairs(late) do assert.is_true(d >= -0.005, string.format("%.3f s early", -d)) end
  end)

  it("task:join returns every result of the task", function()
    local t = viggle.spawn(function(a, b) return a, b, nil, "last" end, 1, 2)
    assert.are.same({ true, 1, 2, nil, "last" }, { t:join() })
  end)

  it("a task cancelled in the middle of a transfer leaves nothing in flight", function()
    local id = m:job({ id = "job_mid" })
    m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 2 })
    local task = viggle.spawn(function() return c:status(id) end)
    viggle.spawn(function() viggle.sleep(0.1) task:cancel() end)
    viggle.run()
    assert.are.equal("cancelled", task:state())
    -- configure refuses while transfers are in flight: the abandoned one must be gone
    assert.has_no.errors(function() viggle.configure({}) end)
  end)

  it("concurrent awaits reuse their connections from round to round", function()
    local ids = m:jobs({ count = 12, id = "round" }) -- poll mode: 6 polls each
    local done = 0
    for _, id in ipairs(ids) do
      viggle.spawn(function()
        assert(c:await(id, { interval = 0.05 }))
        done = done + 1
      end)
    end
    assert(viggle.run())
    assert.are.equal(12, done)
    local conns = m:connections("api")
    assert.is_true(conns <= 16, "connections: " .. conns) -- 72 polls
  end)
end)

describe("the scheduler over HTTP/2 and TLS", function()
  local tls, plain

  setup(function()
    tls = assert(mock_server.start({ tls = true }))
    plain = assert(mock_server.start())
  end)
  teardown(function()
    viggle.configure({})
    if tls then tls:stop() end
    if plain then plain:stop() end
  end)

  it("refuses a server whose certificate it cannot verify", function()
    local c = assert(viggle.new({ base_url = tls.tls_base_url, retries = 0 }))
    local job, err = c:status("job_x")
    assert.is_nil(job)
    assert.are.equal("tls", err.kind)
  end)

  it("keeps the user's max_host_connections through a multiplexed await_all", function()
    viggle.configure({ max_host_connections = 2 })
    local h2 = assert(viggle.new({ base_url = tls.tls_base_url, ca_file = tls.ca_file }))
    local _, summary = h2:await_all(tls:jobs({ count = 30, id = "h2" }), { interval = 0.01, concurrency = 30 })
    assert.are.equal(30, summary.complete)
    plain:config({ delay = 0.02 })
    local c = assert(viggle.new({ base_url = plain.base_url }))
    _, summary = c:await_all(plain:jobs({ count = 12, id = "h1" }), { interval = 0.01, concurrency = 12 })
    assert.are.equal(12, summary.complete)
    local conns = plain:connections("api")
    assert.is_true(conns <= 2, "connections: " .. conns)
  end)
end)
