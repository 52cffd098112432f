-- What a hostile or broken server (or file system) must never do to the
-- library: print the key, raise, wedge a loop, hang on a file, mislabel a
-- failure. Each block failed before its fix (issue 10).
local viggle = require("viggle")
local http = require("viggle.http")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

-- A key the mock accepts, long enough that a cut could show most of it.
local KEY = "sk-hush-7f3a9c2e5b1d4f6a8c0e2b4d6f8a1c3e"

-- True when s shows the key, whole or a telling piece of it.
local function shows_key(s)
  s = tostring(s)
  for i = 1, #KEY - 7 do
    if s:find(KEY:sub(i, i + 7), 1, true) then return true end
  end
  return false
end

describe("hardening", function()
  local m, c, tmp

  setup(function()
    m = assert(mock_server.start())
    tmp = m.prefix .. "/harden"
    os.execute("mkdir -p " .. support.q(tmp))
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ keys = { KEY } })
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 5 }))
  end)

  local function count(method, path)
    local n = 0
    for _, r in ipairs(m:log()) do
      if r.method == method and r.uri == path then n = n + 1 end
    end
    return n
  end

  -- runs bin/viggle; returns rc, stdout, stderr
  local function cli(args)
    local cmd = string.format("cd %s && VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s timeout 30 %s bin/viggle %s"
      .. " >%s/out 2>%s/err </dev/null; echo $?",
      support.q(support.root), m.base_url, KEY, support.interp, args, support.q(tmp), support.q(tmp))
    local rc = tonumber(support.capture(cmd))
    return rc, support.read_file(tmp .. "/out"), support.read_file(tmp .. "/err")
  end

  describe("the key is never shown", function()
    local function assert_hidden(err)
      assert.is_true(viggle.is_error(err))
      for _, k in ipairs({ "message", "code", "action" }) do assert.is_false(shows_key(err[k]), k) end
      assert.is_false(shows_key(tostring(err)))
    end

    it("in code, action, message and tostring of an API error echoing it", function()
      m:fault({ match = "/api/render/*", kind = "status", status = 400, times = 2,
        body = '{"detail": {"error_code": "%KEY%", "message": "bad %KEY%", "action": "use %KEY% less"}}' })
      local _, err = c:status("job_x", { retries = 0 })
      assert.are.equal("api", err.kind)
      assert.are.equal("[redacted]", err.code)
      assert_hidden(err)
      _, err = c:await("job_x", { interval = 0.01 })
      assert_hidden(err)
    end)

    it("in the error of a failed job whose fields echo it", function()
      m:job({ id = "job_echo", outcome = "failed" })
      m:fault({ match = "/api/render/job_echo", kind = "fields", times = -1, set = {
        status = '"failed"', error_code = '"%KEY%"', error_message = '"Bearer %KEY% refused"', error = '"%KEY%"' } })
      local _, err = c:await("job_echo", { interval = 0.01 })
      assert.are.equal("job_failed", err.kind)
      assert.are.equal("Bearer [redacted] refused", err.message)
      assert_hidden(err)
      local results = c:await_all({ "job_echo" }, { interval = 0.01 })
      assert_hidden(results[1])
    end)

    it("in an answer that is a JSON string, whatever the cut", function()
      for pad = 20, 60, 4 do -- the key straddles the 64-character cut at each place
        m:fault({ match = "/api/render/*", kind = "malformed", body = '"' .. ("x"):rep(pad) .. '%KEY%"' })
        local _, err = c:status("job_x", { retries = 0 })
        assert.are.equal("decode", err.kind)
        assert_hidden(err)
      end
    end)

    it("by the CLI's status and wait, plain and --json", function()
      m:job({ id = "job_cli", outcome = "failed" })
      m:fault({ match = "/api/render/job_cli", kind = "fields", times = -1, set = {
        status = '"failed"', checkpoint = '"%KEY%"', mode = '"%KEY%"', error_code = '"%KEY%"',
        error_message = '"%KEY%"', x_echo = '{"nested": ["%KEY%"]}' } })
      for _, args in ipairs({ "status job_cli", "status --json job_cli", "wait --interval 0.01 job_cli",
                              "wait --json --interval 0.01 job_cli" }) do
        local rc, out, err = cli(args)
        assert.is_true(rc == 0 or rc == 3, args)
        assert.matches("job_cli", out .. err)
        assert.is_false(shows_key(out), args .. ": " .. out)
        assert.is_false(shows_key(err), args .. ": " .. err)
      end
    end)

    it("redact takes out a start of the key left at a cut", function()
      assert.are.equal('"abc [redacted]..."', http.redact(c, '"abc ' .. KEY:sub(1, 20) .. '..."'))
      assert.are.equal("a [redacted] b [redacted]", http.redact(c, "a " .. KEY .. " b " .. KEY:sub(1, 9)))
    end)
  end)

  describe("hostile job fields", function()
    local HOSTILE = { '"abc"', "1e400", "-1e400", "NaN", "9223372036854775808", "1e300", "{}", '[1, 2]', "true" }

    it("never make await raise: a bad progress_pct or checkpoint is dropped", function()
      for _, v in ipairs(HOSTILE) do
        m:reset()
        m:config({ keys = { KEY } })
        m:job({ id = "job_h" })
        m:fault({ match = "/api/render/job_h", kind = "fields", times = 3, set = { progress_pct = v, checkpoint = v } })
        local seen = {}
        local ok, job, err = pcall(c.await, c, "job_h", { interval = 0.01, on_progress = function(j)
          seen[#seen + 1] = j
        end })
        assert.is_true(ok, v .. ": " .. tostring(job))
        assert.is_nil(err, v)
        assert.are.equal("complete", job.status)
        for _, j in ipairs(seen) do
          assert.is_true(j.progress_pct == nil or (type(j.progress_pct) == "number" and j.progress_pct >= 0
            and j.progress_pct <= 100), v)
          assert.is_true(j.checkpoint == nil or type(j.checkpoint) == "string", v)
        end
      end
    end)

    it("never make a timeout message raise", function()
      for _, v in ipairs(HOSTILE) do
        m:job({ id = "job_t", outcome = "stuck" })
        m:fault({ match = "/api/render/job_t", kind = "fields", times = -1, set = { progress_pct = v, checkpoint = v } })
        local ok, job, err = pcall(c.await, c, "job_t", { interval = 0.05, timeout = 0.15 })
        assert.is_true(ok, v .. ": " .. tostring(job))
        assert.are.equal("timeout", err.kind, v)
        m:control("DELETE", "/_mock/faults")
      end
    end)

    it("leave await_all's innocent jobs alone: every result is a job or an error", function()
      for _, v in ipairs({ '"abc"', "1e400", "NaN", "{}" }) do
        m:reset()
        m:config({ keys = { KEY } })
        local ids = { m:job({ id = "job_a", outcome = "stuck" }), m:job({ id = "job_b", outcome = "stuck" }),
                      m:job({ id = "job_c", statuses = { "processing", "complete" } }) }
        m:fault({ match = "/api/render/job_a", kind = "fields", times = -1, set = { progress_pct = v, checkpoint = v } })
        local results, summary = c:await_all(ids, { interval = 0.05, timeout = 0.8, concurrency = 1,
                                                    on_progress = function() end })
        for i = 1, 2 do
          assert.is_true(viggle.is_error(results[i]), v .. ": " .. tostring(results[i]))
          assert.are.equal("timeout", results[i].kind, v)
        end
        assert.are.equal("complete", results[3].status, v)
        assert.are.same({ 1, 2, 0 }, { summary.complete, summary.errors, summary.running }, v)
        m:control("DELETE", "/_mock/faults")
      end
    end)

    it("through the CLI's wait: exit 0, no internal error", function()
      for _, v in ipairs({ '"abc"', "1e400", "NaN", "9223372036854775808", "{}" }) do
        m:job({ id = "job_w" .. #v })
        m:fault({ match = "/api/render/job_w" .. #v, kind = "fields", times = 3, set = { progress_pct = v, checkpoint = v } })
        local rc, out, err = cli("wait --interval 0.01 job_w" .. #v)
        assert.are.equal(0, rc, v .. ": " .. out .. err)
        assert.not_matches("internal error", err)
        rc, out, err = cli("wait --json --interval 0.01 job_w" .. #v)
        assert.are.equal(0, rc, v .. ": " .. out .. err)
      end
    end)

    it("await_all: a worker that raises ends its own job with an internal error, the others go on", function()
      local ids = { m:job({ id = "job_1" }), m:job({ id = "job_2" }), m:job({ id = "job_3" }) }
      local api = http.api
      http.api = function(cl, o)
        if o.job_id == "job_2" then error("boom in the worker") end
        return api(cl, o)
      end
      local ok, results, summary = pcall(c.await_all, c, ids, { interval = 0.01, concurrency = 1 })
      http.api = api
      assert.is_true(ok, tostring(results))
      assert.are.equal("complete", results[1].status)
      assert.are.equal("complete", results[3].status)
      assert.is_true(viggle.is_error(results[2]))
      assert.are.equal("internal", results[2].kind)
      assert.are.equal("job_2", results[2].job_id)
      assert.matches("boom in the worker", results[2].message)
      assert.are.same({ 2, 1, 0 }, { summary.complete, summary.errors, summary.running })
    end)
  end)

  describe("Retry-After below the interval", function()
    for _, fault in ipairs({ { retry_after = "0" }, { retry_after_date = -30 } }) do
      local what = fault.retry_after and "Retry-After: 0" or "a date in the past"
      it("does not shorten the wait between polls (" .. what .. ")", function()
        local f = { match = "/api/render/job_r", kind = "status", status = 429, times = -1 }
        for k, v in pairs(fault) do f[k] = v end
        m:fault(f)
        local _, err = c:await("job_r", { interval = 0.2, timeout = 1 })
        assert.are.equal("timeout", err.kind)
        local n = count("GET", "/api/render/job_r")
        assert.is_true(n >= 2 and n <= 7, n .. " requests in 1 s with interval 0.2")
      end)
    end
  end)

  describe("render inputs", function()
    local demo = mock_server.dir .. "/files/demo.mp4"
    local png = mock_server.dir .. "/files/character.png"

    -- render in a child process (a hang must not hang the suite): rc, output
    local function render_child(image)
      local script = string.format([[
        package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
        package.cpath = %q .. "/?.so;" .. package.cpath
        local c = require("viggle").new({ base_url = %q, api_key = %q, timeout = 5 })
        local job, err = c:render({ ref_image = %q, driving_video = %q })
        io.write(job and "job" or (err.kind .. ": " .. err.message))]],
        support.build_dir(), m.base_url, KEY, image, demo)
      support.write_file(tmp .. "/render.lua", script)
      return support.sh(string.format("cd %s && timeout 10 %s %s", support.q(support.root), support.interp,
        support.q(tmp .. "/render.lua")))
    end

    it("a FIFO with no writer is refused at once, not waited on", function()
      local fifo = tmp .. "/pipe.png"
      os.remove(fifo)
      assert.is_true(support.run_ok("mkfifo " .. support.q(fifo)))
      local t = viggle.now()
      local rc, out = render_child(fifo)
      assert.are.equal(0, rc, out)
      assert.matches("invalid_argument: ref_image: cannot read .*pipe.png %(a fifo, not a regular file%)", out)
      assert.is_true(viggle.now() - t < 5)
      assert.are.equal(0, count("POST", "/api/render"))
    end)

    it("/dev/zero (or any device) is refused", function()
      local rc, out = render_child("/dev/zero")
      assert.are.equal(0, rc, out)
      assert.matches("invalid_argument: ref_image: cannot read /dev/zero %(a char, not a regular file%)", out)
      local _, err = c:render({ ref_image = tmp, driving_video = demo })
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("a directory, not a regular file", err.message)
    end)

    it("a file deleted between the check and the upload is an io error naming it", function()
      local img = tmp .. "/gone.png"
      support.write_file(img, support.read_file(png))
      local api = http.api
      http.api = function(cl, o)
        os.remove(img)
        return api(cl, o)
      end
      local job, err = c:render({ ref_image = img, driving_video = demo })
      http.api = api
      assert.is_nil(job)
      assert.are.equal("io", err.kind)
      assert.matches("ref_image: cannot read .*gone.png", err.message)
      assert.is_false(err.retryable)
    end)

    it("a POST cut after its body was sent is not retryable, and not retried", function()
      for _, kind in ipairs({ "truncated", "drop" }) do
        m:reset()
        m:config({ keys = { KEY } })
        m:fault({ match = "/api/render", method = "POST", kind = kind })
        local job, err = c:render({ ref_image = png, driving_video = demo }, { retries = 2 })
        assert.is_nil(job)
        assert.are.equal("network", err.kind, kind)
        assert.is_false(err.retryable, kind)
        assert.are.equal(1, count("POST", "/api/render"), kind)
      end
    end)
  end)

  describe("on_progress", function()
    it("an error whose __tostring raises is still returned, not raised", function()
      m:job({ id = "job_p" })
      local bad = setmetatable({}, { __tostring = function() error("no tostring for you") end })
      local ok, job, err = pcall(c.await, c, "job_p", { interval = 0.01, on_progress = function() error(bad) end })
      assert.is_true(ok, tostring(job))
      assert.is_nil(job)
      assert.are.equal("callback", err.kind)
      assert.are.equal(bad, err.cause)
      assert.matches("on_progress raised", err.message)
    end)

    it("cancelling its own task ends the task cancelled", function()
      m:job({ id = "job_q" })
      local task
      task = viggle.spawn(function()
        return c:await("job_q", { interval = 0.01, on_progress = function() task:cancel() end })
      end)
      viggle.run()
      assert.are.equal("cancelled", task:state())
      local ok, err = task:join()
      assert.is_false(ok)
      assert.are.equal("cancelled", err.kind)
    end)
  end)
end)
