-- What belongs to one call of the scheduler stays with that call: a task that
-- failed unseen is reported by no later run(), and step/run cannot be
-- re-entered from inside a task. (That an await_all leaves no task behind is
-- seen inside nginx: spec/hosts/nginx_spec.lua.)
local viggle = require("viggle")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

describe("the scheduler", function()
  local m, c, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/scheduler-files"
    os.execute("mkdir -p " .. support.q(dir))
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
  end)

  -- spawns a task that only sets a flag; run() must return true and run it
  local function fresh_run()
    local ran = false
    viggle.spawn(function() ran = true end)
    local ok, err = viggle.run()
    return ok, err, ran
  end

  describe("run()", function()
    it("does not report a task that failed while step() drove the scheduler", function()
      local bad = viggle.spawn(function() error("failed under step") end)
      while viggle.step(0) > 0 do end
      assert.are.equal("failed", bad:state())
      local ok, err, ran = fresh_run()
      assert.is_true(ok, tostring(err))
      assert.is_true(ran)
    end)

    it("does not report a task that failed while the join of another task drove the scheduler", function()
      local bad = viggle.spawn(function() error("failed under join") end)
      local good = viggle.spawn(function() viggle.sleep(0.01) return "fine" end)
      assert.are.same({ true, "fine" }, { good:join() })
      assert.are.equal("failed", bad:state())
      local ok, err, ran = fresh_run()
      assert.is_true(ok, tostring(err))
      assert.is_true(ran)
    end)

    it("still reports a task of its own that failed unjoined", function()
      viggle.spawn(function() viggle.sleep(0.01) error("failed in this run") end)
      local ok, err = viggle.run()
      assert.is_false(ok)
      assert.matches("failed in this run", tostring(err))
      assert.is_true((fresh_run()))
    end)
  end)

  describe("the HTTP/2 connection cap of a burst (loop.multiplexing)", function()
    local loop = require("viggle.loop")
    after_each(function() viggle.configure({}) end)

    -- 10 status calls at once in tasks; the connections the mock saw
    local function burst()
      m:reset()
      m:config({ delay = 0.05 })
      local ids = m:jobs({ count = 10, id = "mux" })
      for _, id in ipairs(ids) do viggle.spawn(function() assert(c:status(id)) end) end
      assert.is_true(viggle.run())
      return m:connections("api")
    end

    it("belongs to its holders: it is lifted when the last one releases it, not the first", function()
      local release_a = loop.multiplexing(2)
      local release_b = loop.multiplexing(2)
      release_a()
      release_a() -- a second call does nothing
      local held = burst()
      assert.is_true(held <= 2, "connections while one holder remains: " .. held)
      release_b()
      local free = burst()
      assert.is_true(free > 2, "connections once every holder released: " .. free)
    end)

    it("never replaces a cap set with viggle.configure, nor lifts it", function()
      viggle.configure({ max_host_connections = 4 })
      local release = loop.multiplexing(1)
      local conns = burst()
      assert.is_true(conns > 1 and conns <= 4, "connections: " .. conns)
      release()
      conns = burst()
      assert.is_true(conns > 1 and conns <= 4, "connections: " .. conns)
    end)
  end)

  describe("re-entrance", function()
    it("viggle.step inside a task's callback raises a clear misuse error and corrupts nothing", function()
      m:config({ cdn_delay = 0.5 }) -- the download's progress tick comes before it ends
      local job = assert(c:await(m:job({ id = "sched_reenter" }), { interval = 0.001 }))
      local path, err
      local task = viggle.spawn(function()
        path, err = c:download(job, dir .. "/reenter.mp4", { overwrite = true, on_progress = function()
          viggle.step(0.6) -- the transfer of this very task would end in here
        end })
      end)
      assert.is_true(viggle.run())
      assert.are.equal("done", task:state())
      assert.is_nil(path)
      assert.are.equal("callback", err.kind)
      assert.matches("viggle.step cannot be called inside a task", err.message)
      local ok, rerr, ran = fresh_run()
      assert.is_true(ok, tostring(rerr))
      assert.is_true(ran)
      assert.are.equal(0, viggle.step(0))
    end)

    it("viggle.run and a join from plain code are refused inside a task too", function()
      local other = viggle.spawn(function() viggle.sleep(0.01) end)
      local run_ok, run_err, join_ok, join_err
      viggle.spawn(function()
        local inner = coroutine.wrap(function() -- plain code, not a task, under a running task
          join_ok, join_err = pcall(other.join, other)
        end)
        inner()
        run_ok, run_err = pcall(viggle.run)
      end)
      assert.is_true(viggle.run())
      assert.is_false(run_ok)
      assert.matches("viggle.run cannot be called inside a task", tostring(run_err))
      assert.is_false(join_ok)
      assert.matches("task:join cannot be called inside a task", tostring(join_err))
    end)
  end)
end)
