-- Waiting: client:await, await_all, tasks and the scheduler, against the mock.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")

describe("waiting", function()
  local m, c

  setup(function() m = assert(mock_server.start()) end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
  end)

  local function requests(method, id)
    local out = {}
    for _, r in ipairs(m:log()) do
      if r.server ~= "cdn" and r.method == method and (not id or r.uri == "/api/render/" .. id) then
        out[#out + 1] = r
      end
    end
    return out
  end

  describe("client:await", function()
    it("returns the complete job and reports each change once", function()
      local id = m:job({ id = "job_ok" })
      local changes = {}
      local job = assert(c:await(id, { interval = 0.01, on_progress = function(j)
        changes[#changes + 1] = j.status .. ":" .. tostring(j.checkpoint) .. ":" .. tostring(j.progress_pct)
      end }))
      assert.are.equal("complete", job.status)
      assert.is_string(job.cdn_url)
      assert.are.same({ "queued:nil:0", "processing:ref_done:20", "processing:dri_done:45",
                        "processing:bg_done:70", "processing:render_done:90", "complete:render_done:100" }, changes)
    end)

    it("ends with job_failed carrying the job's code and message", function()
      local id = m:job({ id = "job_f", outcome = "failed", error_code = "CS-UORC01-009", error_message = "no pose" })
      local job, err = c:await(id, { interval = 0.01 })
      assert.is_nil(job)
      assert.are.equal("job_failed", err.kind)
      assert.are.equal("CS-UORC01-009", err.code)
      assert.are.equal("no pose", err.message)
      assert.are.equal(id, err.job_id)
      assert.are.equal("failed", err.job.status)
    end)

    it("ends with job_cancelled", function()
      local id = m:job({ id = "job_c", outcome = "cancelled" })
      local _, err = c:await(id, { interval = 0.01 })
      assert.are.equal("job_cancelled", err.kind)
      assert.are.equal("cancelled", err.job.status)
    end)

    it("treats an unknown status as still running", function()
      local id = m:job({ id = "job_new", statuses = { "queued", "rendering", "mystery", "merging", "complete" } })
      local job = assert(c:await(id, { interval = 0.01 }))
      assert.are.equal("complete", job.status)
      assert.are.equal(5, #requests("GET", id))
    end)

    it("stops at once for errors that cannot get better", function()
      local _, err = c:await("job_unknown", { interval = 0.01 })
      assert.are.equal("not_found", err.kind)
      assert.are.equal(1, #requests("GET"))
    end)

    it("ends with timeout at the deadline, with the last job seen", function()
      local id = m:job({ id = "job_stuck", outcome = "stuck" })
      local t0 = core.now()
      local _, err = c:await(id, { interval = 0.05, timeout = 0.4 })
      local took = core.now() - t0
      assert.are.equal("timeout", err.kind)
      assert.are.equal("processing", err.job.status)
      assert.is_true(took >= 0.39 and took < 0.8, tostring(took))
      assert.are.equal(0, #requests("DELETE"))
    end)

    it("cuts each request's own timeout to the time left", function()
      local id = m:job({ id = "job_slow" })
      m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 5 })
      local t0 = core.now()
      local _, err = c:await(id, { interval = 0.05, timeout = 0.5 })
      assert.are.equal("timeout", err.kind)
      assert.is_true(core.now() - t0 < 1.2)
    end)

    it("cancels the job at the deadline with cancel_on_timeout", function()
      local id = m:job({ id = "job_refund", outcome = "stuck" })
      local _, err = c:await(id, { interval = 0.05, timeout = 0.2, cancel_on_timeout = true })
      assert.are.equal("timeout", err.kind)
      assert.is_true(err.cancelled)
      local del = requests("DELETE", id)
      assert.are.equal(1, #del)
      assert.are.equal("Bearer sk-test-valid", del[1].headers.authorization)
      assert.are.equal("cancelled", assert(c:status(id)).status)
    end)

    it("never ends on transient failures; backs off with jitter under the cap", function()
      local id = m:job({ id = "job_flaky" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 500, times = 2 })
      m:fault({ match = "/api/render/" .. id, kind = "drop" })
      m:fault({ match = "/api/render/" .. id, kind = "malformed" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 503, times = 2 })
      local job = assert(c:await(id, { interval = 0.02, max_backoff = 0.15 }))
      assert.are.equal("complete", job.status)
      local gets = requests("GET", id)
      assert.are.equal(6 + 6, #gets)
      -- the n-th consecutive failure waits at most min(cap, interval * 2^(n-1))
      local bounds = { 0.02, 0.04, 0.08, 0.15, 0.15, 0.15 }
      for i = 1, 6 do
        local gap = gets[i + 1].t - gets[i].t_end
        assert.is_true(gap <= bounds[i] + 0.05, string.format("gap %d = %.3f", i, gap))
      end
    end)

    it("honours Retry-After (seconds) between polls", function()
      local id = m:job({ id = "job_ra" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 429, retry_after = "1" })
      local job = assert(c:await(id, { interval = 0.01 }))
      assert.are.equal("complete", job.status)
      local gets = requests("GET", id)
      local gap = gets[2].t - gets[1].t_end
      assert.is_true(gap >= 0.95 and gap < 1.5, string.format("%.3f", gap))
    end)

    it("honours Retry-After as an HTTP date", function()
      local id = m:job({ id = "job_rad" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 503, retry_after_date = 2 })
      assert(c:await(id, { interval = 0.01 }))
      local gets = requests("GET", id)
      local gap = gets[2].t - gets[1].t_end
      assert.is_true(gap >= 0.9 and gap < 2.6, string.format("%.3f", gap))
    end)

    it("ends with kind callback when on_progress raises, and leaves the job alone", function()
      local id = m:job({ id = "job_cb" })
      local _, err = c:await(id, { interval = 0.01, on_progress = function(j)
        if j.checkpoint == "dri_done" then error("boom") end
      end })
      assert.are.equal("callback", err.kind)
      assert.matches("boom", err.message)
      assert.are.equal(id, err.job_id)
      assert.are.equal(0, #requests("DELETE"))
      assert.are.equal("complete", assert(c:await(id, { interval = 0.01 })).status)
    end)
  end)

  describe("tasks", function()
    it("run awaits side by side: two slow jobs take the time of one", function()
      m:config({ delay = 0.2 })
      local a, b = m:job({ id = "job_a" }), m:job({ id = "job_b" })
      local results = {}
      local t0 = core.now()
      viggle.spawn(function() results.a = c:await(a, { interval = 0.01 }) end)
      viggle.spawn(function() results.b = c:await(b, { interval = 0.01 }) end)
      assert.is_true(viggle.run())
      local took = core.now() - t0
      assert.are.equal("complete", results.a.status)
      assert.are.equal("complete", results.b.status)
      assert.is_true(took < 6 * 0.2 * 1.8, tostring(took)) -- one after another would be 2.4 s
    end)

    it("can be cancelled while waiting; nothing is polled after", function()
      local id = m:job({ id = "job_cancel_task", outcome = "stuck" })
      local task = viggle.spawn(function() return c:await(id, { interval = 0.05 }) end)
      viggle.spawn(function()
        viggle.sleep(0.2)
        assert.is_true(task:cancel())
      end)
      assert.is_true(viggle.run())
      assert.are.equal("cancelled", task:state())
      local ok, err = task:join()
      assert.is_false(ok)
      assert.are.equal("cancelled", err.kind)
      local n = #requests("GET", id)
      core.sleep(0.15)
      assert.are.equal(n, #requests("GET", id))
    end)

    it("can be cancelled in the middle of a transfer", function()
      local id = m:job({ id = "job_mid" })
      m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 2 })
      local task = viggle.spawn(function() return c:status(id) end)
      viggle.spawn(function() viggle.sleep(0.1) task:cancel() end)
      local t0 = core.now()
      viggle.run()
      assert.is_true(core.now() - t0 < 1)
      assert.are.equal("cancelled", task:state())
    end)

    it("report a task's error from run and join", function()
      local task = viggle.spawn(function() error("task broke") end)
      local ok, err = viggle.run()
      assert.is_false(ok)
      assert.matches("task broke", tostring(err))
      local jok, jerr = task:join()
      assert.is_false(jok)
      assert.matches("task broke", tostring(jerr))
    end)

    it("step(0) never blocks: a host loop drives a wait frame by frame", function()
      -- Every answer takes 0.3 s and the polls are 0.2 s apart: a step(0) that
      -- waited for either would take that long. A step that only collects what
      -- is ready takes well under a millisecond; 0.1 s leaves room for a
      -- loaded machine (and valgrind) and still tells the two apart.
      local id = m:job({ id = "job_frames" })
      m:config({ delay = 0.3 })
      local done
      viggle.spawn(function() done = assert(c:await(id, { interval = 0.2 })) end)
      local frames, worst = 0, 0
      repeat
        local t = core.now()
        local live = viggle.step(0)
        worst = math.max(worst, core.now() - t)
        frames = frames + 1
        core.sleep(0.005) -- the host's own work in the frame
        assert.is_true(frames < 10000, "the wait did not end within 10,000 frames")
      until live == 0
      assert.are.equal("complete", done.status)
      assert.is_true(frames > 100, "frames: " .. frames)
      assert.is_true(worst < 0.1, string.format("the slowest step(0) took %.1f ms", worst * 1000))
    end)

    it("blocking calls outside a task still work while tasks are pending", function()
      local id, other = m:job({ id = "job_t" }), m:job({ id = "job_o" })
      local done
      viggle.spawn(function() done = c:await(id, { interval = 0.01 }) end)
      viggle.step(0)
      assert.are.equal("queued", assert(c:status(other)).status)
      viggle.run()
      assert.are.equal("complete", done.status)
    end)
  end)

  describe("client:await_all", function()
    it("returns results in input order, polls a duplicate once, and summarises", function()
      local a = m:job({ id = "job_1" })
      local b = m:job({ id = "job_2", outcome = "failed" })
      local d = m:job({ id = "job_3", outcome = "cancelled" })
      local updates, progress = 0, {}
      local results, summary = c:await_all({ a, b, "bad/id", d, a, "job_missing" }, {
        interval = 0.01,
        on_progress = function(j) progress[j.job_id] = (progress[j.job_id] or 0) + 1 end,
        on_update = function(s) updates = updates + 1 assert.are.equal(6, s.total) end,
      })
      assert.are.equal("complete", results[1].status)
      assert.are.equal("job_failed", results[2].kind)
      assert.are.equal("invalid_argument", results[3].kind)
      assert.are.equal("job_cancelled", results[4].kind)
      assert.are.equal(results[1], results[5])
      assert.are.equal("not_found", results[6].kind)
      assert.are.same({ total = 6, complete = 1, failed = 1, cancelled = 1, errors = 2, running = 0 },
        { total = summary.total, complete = summary.complete, failed = summary.failed,
          cancelled = summary.cancelled, errors = summary.errors, running = summary.running })
      assert.are.equal(6, #requests("GET", a)) -- not 12
      assert.are.equal(6, progress[a])
      assert.is_true(updates >= 6 * 3)
    end)

    it("keeps a slow job from delaying the others", function()
      local slow = m:job({ id = "job_slow1" })
      m:fault({ match = "/api/render/" .. slow, kind = "slow", delay = 1.5 })
      local ids = { slow }
      for i = 1, 5 do ids[#ids + 1] = m:job({ id = "job_fast" .. i }) end
      local finished = {}
      viggle.spawn(function()
        local res = c:await_all(ids, { interval = 0.01, on_progress = function(j)
          if j.status == "complete" then finished[#finished + 1] = j.job_id end
        end })
        assert.are.equal(6, #res)
      end)
      assert.is_true(viggle.run())
      assert.are.equal(slow, finished[#finished])
    end)

    it("keeps to a shared cap on requests per second", function()
      local ids = {}
      for i = 1, 4 do ids[i] = m:job({ id = "job_rate" .. i }) end
      assert(c:await_all(ids, { interval = 0.001, rate = 40 }))
      local gets = requests("GET")
      assert.are.equal(24, #gets)
      local span = gets[#gets].t - gets[1].t
      assert.is_true(span >= 23 / 40 - 0.03, string.format("%.3f", span)) -- 24 requests at 40/s
    end)

    it("follows 1,000 jobs at once over a few dozen connections", function()
      local ids = m:jobs({ count = 1000, id = "bulk" })
      assert.are.equal(1000, #ids)
      local t0 = core.now()
      local results, summary = c:await_all(ids, { interval = 0.05 })
      local took = core.now() - t0
      for i, id in ipairs(ids) do
        assert.are.equal(id, results[i].job_id)
        assert.are.equal("complete", results[i].status)
      end
      assert.are.equal(1000, summary.complete)
      local conns = m:connections("api")
      assert.is_true(conns <= 40, string.format("connections: %d (1000 jobs followed in %.2f s)", conns, took))
    end)
  end)
end)

describe("viggle.configure", function()
  local m
  setup(function() m = assert(mock_server.start()) end)
  teardown(function()
    viggle.configure({})
    if m then m:stop() end
  end)

  it("caps the connections to one host", function()
    viggle.configure({ max_host_connections = 3 })
    m:config({ delay = 0.02 })
    local c = assert(viggle.new({ base_url = m.base_url }))
    local ids = m:jobs({ count = 40, id = "capped" })
    local results, summary = c:await_all(ids, { interval = 0.01, concurrency = 40 })
    assert.are.equal(40, summary.complete)
    assert.are.equal(ids[40], results[40].job_id)
    assert.is_true(m:connections("api") <= 3, "connections: " .. m:connections("api"))
  end)

  it("refuses anything but a table", function()
    assert.has_error(function() viggle.configure(3) end)
  end)
end)

describe("await_all over HTTP/2", function()
  local m
  setup(function() m = assert(mock_server.start({ tls = true })) end)
  teardown(function() if m then m:stop() end end)

  it("multiplexes a burst over a few TLS connections instead of one per request", function()
    local c = assert(viggle.new({ base_url = m.tls_base_url, ca_file = m.ca_file }))
    -- The first poll of a burst goes alone and tells whether the API speaks
    -- HTTP/2; when it has not answered within a second (a fresh TLS handshake
    -- under valgrind takes longer) the rest start without knowing, one
    -- connection each. Following one job first leaves an HTTP/2 connection in
    -- the pool: the burst's first poll then answers at once, however slow the
    -- machine, and the count below does not depend on the timing.
    local warm = m:job({ id = "h2warm" })
    assert.are.equal("complete", assert(c:await_all({ warm }, { interval = 0.01 }))[1].status)
    local ids = m:jobs({ count = 300, id = "h2job" })
    local results, summary = c:await_all(ids, { interval = 0.01, concurrency = 300 })
    assert.are.equal(300, summary.complete)
    assert.are.equal(ids[300], results[300].job_id)
    local conns = m:connections("api")
    assert.is_true(conns <= 4, "connections: " .. conns) -- the warm one, then ceil(300 / 100) at most
  end)
end)
