-- Options as a newcomer types them: a misspelt name, a number that is not
-- one, a poll interval that would hammer a real API are refused at once (they
-- raise: misuse); an API that cannot be reached ends a wait with kind
-- network after unreachable_timeout instead of retrying in silence.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local KEY = "sk-test-valid"

-- The message of what fn raised (or nil when it raised nothing).
local function raised(fn)
  local ok, err = pcall(fn)
  if ok then return nil end
  return tostring(err)
end

describe("options (and render's retries of a 429)", function()
  local m, c

  setup(function() m = assert(mock_server.start()) end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY }))
  end)

  it("an unknown name raises everywhere, naming the closest valid one, before anything is sent", function()
    local cases = {
      { "await", function() c:await("job_x", { intervall = 1 }) end, "intervall", "interval" },
      { "await_all", function() c:await_all({ "job_x" }, { concurency = 2 }) end, "concurency", "concurrency" },
      { "status", function() c:status("job_x", { retry = 1 }) end, "retry", "retries" },
      { "cancel", function() c:cancel("job_x", { timout = 1 }) end, "timout", "timeout" },
      { "credits", function() c:credits({ timeot = 1 }) end, "timeot", "timeout" },
      { "render", function() c:render({ character_id = "c", scene_id = "s" }, { retrys = 1 }) end, "retrys",
        "retries" },
      { "download", function() c:download("job_x", "/tmp/never.mp4", { overwrit = true }) end, "overwrit",
        "overwrite" },
      { "run", function() c:run({ character_id = "c", scene_id = "s" }, { ouput = "x.mp4" }) end, "ouput", "output" },
      { "new", function() viggle.new({ apikey = "sk-x" }) end, "apikey", "api_key" },
      { "configure", function() viggle.configure({ max_host_conections = 2 }) end, "max_host_conections",
        "max_host_connections" },
    }
    -- (viggle.uv's install: in spec/uv_spec.lua, which owns luv: a second copy of luv in one process crashes)
    for _, case in ipairs(cases) do
      local what, fn, bad, good = case[1], case[2], case[3], case[4]
      assert.are.equal(string.format("unknown option '%s' to '%s' (did you mean '%s'?)", bad, what, good),
        (raised(fn) or "nothing raised"):gsub("^.-:%d+: ", ""), what)
    end
    -- a name far from every valid one gets no guess
    assert.are.equal("unknown option 'colour' to 'await'", raised(function() c:await("job_x", { colour = 1 }) end)
      :gsub("^.-:%d+: ", ""))
    assert.are.equal(0, #m:log(), "a refused call sent something")
  end)

  it("the message points at the caller's line", function()
    local msg = raised(function() c:await("job_x", { intervall = 1 }) end)
    assert.matches("options_spec%.lua:%d+: unknown option", msg)
  end)

  it("non-finite and negative numbers raise (NaN would mean no timeout, math.huge no cap)", function()
    local nan = 0 / 0
    for _, case in ipairs({
      { function() c:await("job_x", { timeout = -1 }) end, "timeout", "await" },
      { function() c:await("job_x", { interval = math.huge }) end, "interval", "await" },
      { function() c:await_all({ "job_x" }, { rate = 0 }) end, "rate", "await_all" },
      { function() c:status("job_x", { timeout = nan }) end, "timeout", "status" },
      { function() c:download("job_x", "/tmp/never.mp4", { timeout = -math.huge }) end, "timeout", "download" },
      { function() c:await("job_x", { on_progress = "print" }) end, "on_progress", "await" },
    }) do
      assert.matches(string.format("bad option '%s' to '%s' %%(", case[2], case[3]), raised(case[1]) or "nothing")
    end
    assert.are.equal(0, #m:log())
    -- viggle.new returns its refusals (invalid_argument), as it does for a bad base_url
    for k, v in pairs({ timeout = nan, connect_timeout = math.huge, max_body = math.huge, retries = 1.5 }) do
      local cl, err = viggle.new({ base_url = m.base_url, [k] = v })
      assert.is_nil(cl)
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("^" .. k .. " must be a finite ", err.message)
    end
  end)

  it("refuses an interval under a second unless the base_url is a loopback address", function()
    local remote = assert(viggle.new({ base_url = "https://apis.example.invalid", api_key = KEY }))
    assert.matches("bad option 'interval' to 'await' %(at least 1 second, got 0",
      raised(function() remote:await("job_x", { interval = 0 }) end))
    assert.matches("bad option 'interval' to 'await_all'",
      raised(function() remote:await_all({ "job_x" }, { interval = 0.5 }) end))
    assert.matches("bad option 'interval' to 'run'",
      raised(function() remote:run({ character_id = "c", scene_id = "s" }, { interval = 0.2 }) end))
    for _, base in ipairs({ "http://127.0.0.1:9", "http://127.1.2.3:9", "http://[::1]:9", "http://localhost:9",
                            "http://LOCALHOST:9" }) do
      local local_c = assert(viggle.new({ base_url = base, api_key = KEY }))
      assert.is_nil(raised(function() local_c:await("job_x", { interval = 0.01, timeout = 0 }) end), base)
    end
    -- the mock is on 127.0.0.1: short intervals work there
    local job = assert(c:await(m:job({ id = "job_fast" }), { interval = 0 }))
    assert.are.equal("complete", job.status)
  end)

  it("viggle.run with a table raises and points to client:run", function()
    local msg = raised(function() viggle.run({ ref_image = "me.png" }, { output = "out.mp4" }) end)
    assert.matches("options_spec%.lua:%d+: viggle%.run runs the scheduler", msg)
    assert.matches("client:run%(params, opts%)", msg)
  end)

  it("a 429 without Retry-After is retried with backoff, a bounded number of times", function()
    m:fault({ match = "/api/render", method = "POST", kind = "status", status = 429, times = 2 })
    local seen = {}
    local job, err = c:render({ character_id = "char_1", scene_id = "scene_1" }, { retries = 3,
      on_retry = function(e, delay) seen[#seen + 1] = { e.status, delay } end })
    assert.is_table(job, tostring(err))
    assert.matches("^job_", job.job_id)
    assert.are.equal(2, #seen)
    for _, s in ipairs(seen) do
      assert.are.equal(429, s[1])
      assert.is_true(s[2] >= 0 and s[2] <= 8)
    end
    m:reset()
    m:fault({ match = "/api/render", method = "POST", kind = "status", status = 429, times = -1 })
    local t0 = core.now()
    job, err = c:render({ character_id = "char_1", scene_id = "scene_1" }, { retries = 1 })
    assert.is_nil(job)
    assert.are.equal("rate_limited", err.kind)
    local posts = 0
    for _, r in ipairs(m:log()) do if r.method == "POST" then posts = posts + 1 end end
    assert.are.equal(2, posts) -- the first try and one retry
    assert.is_true(core.now() - t0 < 3)
  end)
end)

describe("an API that cannot be reached", function()
  it("ends await with kind network and the cause after unreachable_timeout, each retry seen by on_retry", function()
    local port = support.free_port()
    local c = assert(viggle.new({ base_url = "http://127.0.0.1:" .. port, api_key = KEY }))
    local retries = {}
    local t0 = core.now()
    local job, err = c:await("job_x", { interval = 0.05, max_backoff = 0.1, unreachable_timeout = 0.6,
      on_retry = function(e, delay) retries[#retries + 1] = { e.kind, delay } end })
    local took = core.now() - t0
    assert.is_nil(job)
    assert.are.equal("network", err.kind)
    assert.are.equal("COULDNT_CONNECT", err.code)
    assert.matches("^the API could not be reached for %d+%.%d s: ", err.message)
    assert.are.equal("network", err.cause.kind)
    assert.is_true(took >= 0.6 and took < 2, string.format("took %.2fs", took))
    assert.is_true(#retries >= 3, "retries seen: " .. #retries)
    for _, r in ipairs(retries) do
      assert.are.equal("network", r[1])
      assert.is_true(r[2] >= 0 and r[2] <= 0.6)
    end
  end)

  it("an unknown host ends the wait the same way", function()
    local c = assert(viggle.new({ base_url = "http://viggle-no-such-host.invalid", api_key = KEY }))
    local _, err = c:await("job_x", { interval = 1, max_backoff = 1, unreachable_timeout = 0.5 })
    assert.are.equal("network", err.kind)
    assert.are.equal("COULDNT_RESOLVE_HOST", err.code)
  end)

  it("never waits past the wait's own deadline, and still ends as network", function()
    local c = assert(viggle.new({ base_url = "http://127.0.0.1:" .. support.free_port(), api_key = KEY }))
    local t0 = core.now()
    local results = c:await_all({ "job_a", "job_b" }, { interval = 0.05, max_backoff = 0.1, timeout = 0.4 })
    assert.is_true(core.now() - t0 < 1.5)
    assert.are.equal("network", results[1].kind, tostring(results[1]))
    assert.are.equal("network", results[2].kind, tostring(results[2]))
  end)

  it("is 60 s by default, as README says", function()
    assert.are.equal(60, require("viggle.http").DEFAULTS.unreachable_timeout)
  end)
end)
