-- The client's promises that need numbers: its defaults, how often it asks
-- (retries, backoff bounded from below and above, the default interval),
-- when on_progress fires, and where a request carrying the key may go.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")

local KEY = "sk-test-valid"

describe("the client", function()
  local m, c

  setup(function() m = assert(mock_server.start()) end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY }))
  end)

  local function api(method, uri)
    local out = {}
    for _, r in ipairs(m:log()) do
      if r.server ~= "cdn" and (not method or r.method == method) and (not uri or r.uri == uri) then
        out[#out + 1] = r
      end
    end
    return out
  end

  it("reads back the documented defaults", function()
    local d = assert(viggle.new({ base_url = m.base_url }))
    assert.are.equal(30, d.timeout)
    assert.are.equal(10, d.connect_timeout)
    assert.are.equal(8 * 1024 * 1024, d.max_body)
    assert.are.equal(2, d.retries)
    local o = assert(viggle.new({ base_url = m.base_url, timeout = 0, connect_timeout = 0, retries = 0, max_body = 0 }))
    assert.are.equal(0, o.timeout)
    assert.are.equal(0, o.retries)
  end)

  it("refuses negative numbers", function()
    for _, k in ipairs({ "timeout", "connect_timeout", "max_body", "retries" }) do
      local cl, err = viggle.new({ base_url = m.base_url, [k] = -0.5 })
      assert.is_nil(cl)
      assert.are.equal("invalid_argument", err.kind)
    end
  end)

  it("retries a failing status call twice by default, then gives up", function()
    local id = m:job({ id = "job_r" })
    m:fault({ match = "/api/render/job_r", kind = "status", status = 500, times = 5 })
    local job, err = c:status(id)
    assert.is_nil(job)
    assert.are.equal(500, err.status)
    assert.are.equal(3, #api("GET", "/api/render/job_r"))
  end)

  it("backs off between polls after failures: bounded from below and above", function()
    local id = m:job({ id = "job_bo", outcome = "complete" })
    local failures = 14
    m:fault({ match = "/api/render/job_bo", kind = "status", status = 503, times = failures })
    local interval, cap = 0.01, 0.3
    assert(c:await(id, { interval = interval, max_backoff = cap }))
    local gets = api("GET", "/api/render/job_bo")
    assert.is_true(#gets >= failures + 1)
    local total = 0
    for k = 1, failures do
      local gap = gets[k + 1].t - gets[k].t
      total = total + gap
      -- full jitter: at most min(cap, interval * 2^(k-1)), plus the time of a request
      assert.is_true(gap <= math.min(cap, interval * 2 ^ (k - 1)) + 0.25,
        string.format("gap %d: %.3f s", k, gap))
    end
    -- backed off, not every interval: 14 waits of at most 0.01 s would be 0.14 s;
    -- the caps sum to 3.3 s (the chance of the jittered sum under 0.7 s is about 1e-3)
    assert.is_true(total >= 0.7, string.format("%.3f s in all", total))
  end)

  it("calls on_progress only when the job changes, not on every poll", function()
    local id = m:job({ id = "job_slow", advance = "time", step = 0.25 })
    local calls = {}
    assert(c:await(id, { interval = 0.02, on_progress = function(j)
      calls[#calls + 1] = j.status .. ":" .. tostring(j.progress_pct)
    end }))
    assert.are.same({ "queued:0", "processing:20", "processing:45", "processing:70", "processing:90",
                      "complete:100" }, calls)
    assert.is_true(#api("GET", "/api/render/job_slow") > 12) -- many more polls than changes
  end)

  it("polls every 3 s by default, and ends at the deadline, not after it", function()
    local id = m:job({ id = "job_stuck", outcome = "stuck" })
    local t0 = core.now()
    local job, err = c:await(id, { timeout = 0.6 })
    local took = core.now() - t0
    assert.is_nil(job)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(1, #api("GET", "/api/render/job_stuck"))
    assert.is_true(took >= 0.55 and took < 0.95, string.format("%.3f s", took))
  end)

  it("follows no redirect with the key, whichever client used the pooled handle before", function()
    local target = m:job({ id = "job_target", outcome = "stuck" })
    m:fault({ match = "/api/render/job_moved", kind = "status", status = 302, times = -1,
              headers = { Location = "/api/render/" .. target } })
    local anon = assert(viggle.new({ base_url = m.base_url, api_key = "", retries = 0 }))
    local keyed = assert(viggle.new({ base_url = m.base_url, api_key = KEY, retries = 0 }))
    for _ = 1, 3 do
      -- without a key a redirect is harmless, and followed
      assert.are.equal(target, assert(anon:status("job_moved")).job_id)
      local job, err = keyed:status("job_moved")
      assert.is_nil(job)
      assert.are.equal(302, err.status)
    end
    for _, r in ipairs(api("GET", "/api/render/" .. target)) do
      assert.is_nil(r.headers.authorization, "the key followed a redirect")
    end
    assert.are.equal(3, #api("GET", "/api/render/" .. target))
  end)

  it("never lets a redirect move a DELETE to another job", function()
    local target = m:job({ id = "job_other", outcome = "stuck" })
    m:fault({ match = "/api/render/job_gone", method = "DELETE", kind = "status", status = 302,
              headers = { Location = "/api/render/" .. target } })
    local res, err = c:cancel("job_gone")
    assert.is_nil(res)
    assert.are.equal(302, err.status)
    assert.are.equal(0, #api("DELETE", "/api/render/" .. target))
    assert.are.equal("stuck", m:job_state(target).job.outcome)
  end)

  it("viggle.await and viggle.status use a client built from the environment", function()
    m:job({ id = "job_env", advance = "poll" })
    local script = string.format([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = %q .. package.cpath
      local viggle = require("viggle")
      local job, err = viggle.await("job_env", { interval = 0.01 })
      io.write(job and job.status or tostring(err))]], "./build/" .. ((type(jit) == "table") and "jit"
      or _VERSION:match("%d+%.%d+")) .. "/?.so;")
    local f = assert(io.open(m.prefix .. "/env_await.lua", "w"))
    f:write(script)
    f:close()
    local support = require("spec.support")
    local out = support.capture(string.format("VIGGLE_BASE_URL=%s VIGGLE_API_KEY= %s %s", m.base_url,
      support.interp, m.prefix .. "/env_await.lua"))
    assert.are.equal("complete", out)
  end)
end)
