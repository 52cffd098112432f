-- client:status against the mock: fields, nulls, every error kind, refusal
-- and escaping of ids, the key never leaking, the body cap, timeouts, keep-alive.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")

local KEY = "sk-test-valid"

describe("client:status", function()
  local m, c

  setup(function()
    m = assert(mock_server.start())
  end)
  teardown(function()
    if m then m:stop() end
  end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 5, retries = 0 }))
  end)

  local function api_log()
    local out = {}
    for _, r in ipairs(m:log()) do
      if r.server ~= "cdn" then out[#out + 1] = r end
    end
    return out
  end

  it("returns a queued job with its nulls absent and unknown fields kept", function()
    local id = m:job({ id = "job_fields" })
    local job = assert(c:status(id))
    assert.are.equal("job_fields", job.job_id)
    assert.are.equal("queued", job.status)
    assert.is_nil(job.checkpoint)
    assert.is_nil(job.cdn_url)
    assert.is_nil(job.mask_cdn_url)
    assert.is_nil(job.error_code)
    assert.is_nil(job.completed_at)
    for _, v in pairs(job) do assert.are_not.equal(core.null, v) end
    assert.are.equal("kept", job.x_mock)
    assert.are.same({}, job.chunks)
  end)

  it("follows the lifecycle through every checkpoint with rising progress to complete", function()
    local id = m:job({ id = "job_life" })
    local seen, last_pct = {}, -1
    for _ = 1, 6 do
      local job = assert(c:status(id))
      seen[#seen + 1] = job.status .. ":" .. tostring(job.checkpoint)
      assert.is_true(job.progress_pct > last_pct)
      last_pct = job.progress_pct
      if job.status == "complete" then
        assert.are.equal(100, job.progress_pct)
        assert.matches("^" .. m.cdn_base:gsub("%p", "%%%0") .. "/video/job_life%.mp4", job.cdn_url)
        assert.are.equal(job.cdn_url, job.download_url)
        assert.is_string(job.completed_at)
      end
    end
    assert.are.same({ "queued:nil", "processing:ref_done", "processing:dri_done", "processing:bg_done",
                      "processing:render_done", "complete:render_done" }, seen)
  end)

  it("reports a failed job's error code and message", function()
    local id = m:job({ id = "job_bad", outcome = "failed", error_code = "CS-UORC01-009", error_message = "pose lost" })
    local job
    for _ = 1, 6 do job = assert(c:status(id)) end
    assert.are.equal("failed", job.status)
    assert.are.equal("CS-UORC01-009", job.error_code)
    assert.are.equal("pose lost", job.error_message)
  end)

  it("keeps integer fields integers and never rounds a large id", function()
    local id = m:job({ id = "job_int" })
    local job = assert(c:status(id))
    assert.are.equal("0", tostring(job.progress_pct))
    local big = core.decode('{"job_id": 12345678901234567890123, "n": 7}')
    assert.are.equal("12345678901234567890123", big.job_id)
    assert.are.equal("7", tostring(big.n))
  end)

  it("sends GET /api/render/{id} with the Bearer key, a User-Agent and JSON accept", function()
    local id = m:job({ id = "job_wire" })
    assert(c:status(id))
    local log = api_log()
    assert.are.equal(1, #log)
    assert.are.equal("GET", log[1].method)
    assert.are.equal("/api/render/job_wire", log[1].uri)
    assert.are.equal("Bearer " .. KEY, log[1].headers["authorization"])
    assert.matches("^viggle%-lua/" .. viggle.VERSION:gsub("%p", "%%%0") .. " libcurl/", log[1].headers["user-agent"])
    assert.matches("application/json", log[1].headers["accept"])
  end)

  it("works without a key (the status endpoint needs none) and sends no Authorization", function()
    local anon = assert(viggle.new({ base_url = m.base_url, api_key = "", retries = 0 }))
    local id = m:job({ id = "job_anon" })
    assert.are.equal("queued", assert(anon:status(id)).status)
    assert.is_nil(api_log()[1].headers["authorization"])
  end)

  describe("refuses bad job ids locally and sends nothing", function()
    local bad = {
      { "", "is empty" }, { ("x"):rep(257), "longer than 256" }, { "a/b", "/ ? #" },
      { "a?b", "/ ? #" }, { "a#b", "/ ? #" }, { "a%2e", "/ ? #" }, { "a b", "whitespace" },
      { "a\tb", "whitespace" }, { "a\0b", "control" }, { "a\nb", "whitespace" }, { "..", "'..'" },
      { "job..x", "'..'" },
    }
    for _, case in ipairs(bad) do
      it(string.format("%q", case[1]:sub(1, 12)), function()
        local job, err = c:status(case[1])
        assert.is_nil(job)
        assert.are.equal("invalid_argument", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
        assert.are.equal(0, #api_log())
      end)
    end
    it("a non-string id", function()
      local _, err = c:status(42)
      assert.are.equal("invalid_argument", err.kind)
      assert.are.equal("job id must be a string, got number", err.message)
    end)
  end)

  it("percent-encodes what is left of an id", function()
    local _, err = c:status("job:ü+1")
    assert.are.equal("not_found", err.kind)
    assert.are.equal("/api/render/job%3A%C3%BC%2B1", api_log()[1].request_uri)
  end)

  describe("error kinds", function()
    it("not_found for an unknown job, with the API's message", function()
      local job, err = c:status("job_nobody")
      assert.is_nil(job)
      assert.are.equal("not_found", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("job_nobody", err.job_id)
      assert.is_false(err.retryable)
      assert.matches("^viggle: not_found: .+ %(HTTP 404, job job_nobody%)$", tostring(err))
    end)

    it("rate_limited with Retry-After in seconds", function()
      local id = m:job({ id = "job_429" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 429, retry_after = "7" })
      local _, err = c:status(id)
      assert.are.equal("rate_limited", err.kind)
      assert.are.equal(429, err.status)
      assert.are.equal(7, err.retry_after)
      assert.is_true(err.retryable)
    end)

    it("rate_limited with Retry-After as an HTTP date", function()
      local id = m:job({ id = "job_429d" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 429, retry_after_date = 30 })
      local _, err = c:status(id)
      assert.are.equal("rate_limited", err.kind)
      assert.is_true(err.retry_after >= 27 and err.retry_after <= 31, tostring(err.retry_after))
    end)

    it("http for 500 and 503 (retryable), and for a proxy's HTML page", function()
      local id = m:job({ id = "job_5xx" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 500 })
      local _, err = c:status(id)
      assert.are.equal("http", err.kind)
      assert.are.equal(500, err.status)
      assert.is_true(err.retryable)
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 503, retry_after = "2" })
      _, err = c:status(id)
      assert.are.equal(503, err.status)
      assert.are.equal(2, err.retry_after)
      m:fault({ match = "/api/render/" .. id, kind = "html" })
      _, err = c:status(id)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.are.equal("unexpected HTTP status 502", err.message)
    end)

    it("retries transient failures when asked, and then succeeds", function()
      local id = m:job({ id = "job_retry" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 503, times = 2 })
      local retrying = assert(viggle.new({ base_url = m.base_url, retries = 2 }))
      local job = assert(retrying:status(id))
      assert.are.equal("queued", job.status)
      assert.are.equal(3, #api_log())
    end)

    it("decode for malformed JSON", function()
      local id = m:job({ id = "job_garbled" })
      m:fault({ match = "/api/render/" .. id, kind = "malformed" })
      local _, err = c:status(id)
      assert.are.equal("decode", err.kind)
      assert.are.equal(200, err.status)
      assert.is_true(err.retryable)
    end)

    it("network for a truncated body and for a dropped connection", function()
      local id = m:job({ id = "job_cut" })
      m:fault({ match = "/api/render/" .. id, kind = "truncated" })
      local _, err = c:status(id)
      assert.are.equal("network", err.kind)
      assert.are.equal("PARTIAL_FILE", err.code)
      m:fault({ match = "/api/render/" .. id, kind = "drop" })
      _, err = c:status(id)
      assert.are.equal("network", err.kind)
      assert.are.equal("GOT_NOTHING", err.code)
    end)

    it("network when nothing listens", function()
      local dead = assert(viggle.new({ base_url = "http://127.0.0.1:9", retries = 0 }))
      local _, err = dead:status("job_x")
      assert.are.equal("network", err.kind)
      assert.are.equal("COULDNT_CONNECT", err.code)
      assert.is_true(err.retryable)
    end)

    it("timeout for a slow answer, within the timeout", function()
      local id = m:job({ id = "job_slow" })
      m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 3 })
      local quick = assert(viggle.new({ base_url = m.base_url, timeout = 0.5, retries = 0 }))
      local t0 = core.now()
      local _, err = quick:status(id)
      local took = core.now() - t0
      assert.are.equal("timeout", err.kind)
      assert.are.equal("OPERATION_TIMEDOUT", err.code)
      assert.is_true(took >= 0.45 and took < 1.5, tostring(took))
    end)

    it("tls when the server does not speak TLS", function()
      local tls = assert(viggle.new({ base_url = m.base_url:gsub("^http:", "https:"), retries = 0, timeout = 3 }))
      local _, err = tls:status("job_x")
      assert.are.equal("tls", err.kind)
    end)

    it("too_large for an answer over the body cap, fine under a larger cap", function()
      local id = m:job({ id = "job_huge" })
      m:fault({ match = "/api/render/" .. id, kind = "huge", size = 9 * 1024 * 1024 })
      local _, err = c:status(id)
      assert.are.equal("too_large", err.kind)
      assert.matches("8388608 byte limit", err.message)
      m:fault({ match = "/api/render/" .. id, kind = "huge", size = 9 * 1024 * 1024 })
      local roomy = assert(viggle.new({ base_url = m.base_url, max_body = 16 * 1024 * 1024, retries = 0 }))
      assert.are.equal("job_huge", assert(roomy:status(id)).job_id)
    end)

    it("auth for an expired key, with the API's code, message and action", function()
      local expired = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-expired", retries = 0 }))
      local _, err = expired:credits()
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.are.equal("CS-UORC01-007", err.code)
      assert.is_string(err.action)
    end)

    it("auth for a missing key, from a plain-string detail", function()
      local res = assert(require("viggle.client").new({ base_url = m.base_url, api_key = "" }))
      local _, err = require("viggle.http").api(res, { path = "/api/credits" })
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.is_string(err.message)
      assert.is_nil(err.message:find("unexpected", 1, true))
    end)
  end)

  describe("the API key", function()
    local SECRET = "sk-test-valid"
    it("never appears in an error, the client's tostring, or its fields", function()
      local id = m:job({ id = "job_secret" })
      m:fault({ match = "/api/render/" .. id, kind = "status", status = 400,
                body = '{"detail":{"error_code":"CS-UORC01-002","message":"bad key sk-test-valid"}}' })
      local _, err = c:status(id)
      assert.are.equal("api", err.kind)
      assert.is_nil(tostring(err):find(SECRET, 1, true))
      assert.matches("%[redacted%]", err.message)
      assert.is_nil(tostring(c):find(SECRET, 1, true))
      for _, v in pairs(c) do assert.are_not.equal(SECRET, v) end
    end)
    it("a user_agent with a line break is refused too (header injection)", function()
      local bad, err = viggle.new({ base_url = m.base_url, user_agent = "ua\r\nX-Evil: 1" })
      assert.is_nil(bad)
      assert.are.equal("invalid_argument", err.kind)
    end)
    it("is refused when it holds whitespace (header injection)", function()
      local bad, err = viggle.new({ base_url = m.base_url, api_key = "sk-x\r\nX-Evil: 1" })
      assert.is_nil(bad)
      assert.are.equal("invalid_argument", err.kind)
      assert.is_nil(tostring(err):find("Evil", 1, true))
    end)
  end)

  it("reuses one connection for sequential calls (counted at the mock)", function()
    local id = m:job({ id = "job_keep", outcome = "stuck" })
    for _ = 1, 20 do assert(c:status(id)) end
    -- (a slow answer of an earlier test may land in the log meanwhile: only ours count)
    local mine, conns, n = 0, {}, 0
    for _, r in ipairs(api_log()) do
      if r.uri == "/api/render/" .. id then
        mine = mine + 1
        if not conns[r.connection] then conns[r.connection], n = true, n + 1 end
      end
    end
    assert.are.equal(20, mine)
    assert.are.equal(1, n)
  end)

  it("refuses a base_url that is not http(s)", function()
    for _, u in ipairs({ "ftp://x", "file:///etc/passwd", "apis.viggle.ai", "http://h/?q=1" }) do
      local cl, err = viggle.new({ base_url = u })
      assert.is_nil(cl)
      assert.are.equal("invalid_argument", err.kind)
    end
  end)

  it("module-level status uses a client built from the environment", function()
    -- viggle.default() reads VIGGLE_BASE_URL once; a fresh module state shows it
    local id = m:job({ id = "job_env" })
    local script = string.format([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = %q .. package.cpath
      local job, err = require("viggle").status("job_env")
      io.write(job and job.status or tostring(err))]], require("spec.support").build_dir() .. "/?.so;")
    local f = assert(io.open(m.prefix .. "/env.lua", "w"))
    f:write(script)
    f:close()
    local interp = require("spec.support").interp
    local p = assert(io.popen("VIGGLE_BASE_URL=" .. m.base_url .. " " .. interp .. " " .. m.prefix .. "/env.lua"))
    local out = p:read("*a")
    p:close()
    assert.are.equal("queued", out)
    assert.are.equal(id, api_log()[1].uri:match("[^/]+$"))
  end)
end)
