-- A game loop as the host: 60 frames a second, each calling viggle.step(0)
-- once, while tasks await 20 jobs, upload 60 MB and download 100 MB. The
-- transfers run on the C core's thread, so no frame is held and the bytes
-- move as fast as outside the loop.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local now, sleep, fmt, cpu = core.now, core.sleep, string.format, core.thread_cpu
local FILES = mock_server.dir .. "/files/"

local function ms(s) return fmt("%.1f ms", s * 1000) end

-- the q-quantile of a list of numbers
local function quantile(list, q)
  local sorted = {}
  for i, v in ipairs(list) do sorted[i] = v end
  table.sort(sorted)
  return sorted[math.max(1, math.ceil(#sorted * q))]
end

local function md5_of(path)
  local p = assert(io.popen("md5sum " .. support.q(path)))
  local sum = p:read("*a"):match("^(%x+)")
  p:close()
  return sum
end

local function same_file(a, b)
  local rc = os.execute("cmp -s " .. support.q(a) .. " " .. support.q(b))
  return rc == true or rc == 0
end

describe("a game loop calling viggle.step(0) once a 16 ms frame", function()
  local m, c, dir, upload, big
  local UP = 60 * 1024 * 1024
  local DOWN = 100 * 1024 * 1024

  setup(function()
    m = assert(mock_server.start())
    dir = support.capture("mktemp -d"):gsub("%s+$", "")
    upload = dir .. "/dance.mp4"
    local f = assert(io.open(upload, "wb"))
    local chunk = ("0123456789abcdef"):rep(65536) -- 1 MiB
    for i = 1, UP / #chunk do f:write(chunk:sub(i % 16 + 1) .. chunk:sub(1, i % 16)) end
    f:close()
  end)
  teardown(function()
    if m then m:stop() end
    if dir and dir:match("^/tmp/") then os.execute("rm -rf " .. support.q(dir)) end
  end)
  before_each(function()
    m:reset()
    big = m:big(DOWN)
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 60 }))
  end)

  local function render()
    return c:render({ ref_image = FILES .. "character.png", driving_video = upload })
  end

  local function uploaded_md5()
    for _, r in ipairs(m:log()) do
      if r.method == "POST" and r.form then return r.form.driving_video.md5, r.form.driving_video.size end
    end
  end

  it("no step overruns its budget and the transfers run at their blocking speed", function()
    -- blocking, outside the loop: what the transfers cost on their own
    local t = now()
    assert(render())
    local up_blocking = now() - t
    t = now()
    assert(c:download(m.cdn_base .. "/video/big.mp4", dir .. "/blocking.mp4", { overwrite = true }))
    local down_blocking = now() - t
    os.remove(dir .. "/blocking.mp4")
    m:reset()
    big = m:big(DOWN)

    m:config({ delay = 0.05 })
    local ids = m:jobs({ count = 20, id = "frame", advance = "time", step = 0.1 })
    local jobs, up_job, up_time, down_path, down_time = {}, nil, nil, nil, nil
    local t0 = now()
    for i = 1, 20 do viggle.spawn(function() jobs[i] = c:await(ids[i], { interval = 0.1 }) end) end
    viggle.spawn(function()
      up_job = assert(render())
      up_time = now() - t0
    end)
    viggle.spawn(function()
      down_path = assert(c:download(m.cdn_base .. "/video/big.mp4", dir .. "/loop.mp4", { overwrite = true }))
      down_time = now() - t0
    end)
    local steps, longest, frame = {}, 0, 1 / 60
    local next_frame = now()
    while true do
      local s, c0 = now(), cpu()
      local live = viggle.step(0)
      local took = now() - s
      longest = math.max(longest, cpu() - c0)
      steps[#steps + 1] = took
      if live == 0 then break end
      assert.is_true(now() - t0 < 60, "the loop ran a minute")
      next_frame = next_frame + frame
      local rest = next_frame - now()
      if rest > 0 then sleep(rest) else next_frame = now() end
    end
    for i = 1, 20 do assert.are.same({ ids[i], "complete" }, { jobs[i] and jobs[i].job_id, jobs[i] and jobs[i].status }) end
    assert.matches("^job_", up_job.job_id)
    local md5, size = uploaded_md5()
    assert.are.equal(UP, size)
    assert.are.equal(md5_of(upload), md5)
    assert.are.equal(dir .. "/loop.mp4", down_path)
    assert.is_true(same_file(down_path, big), "the download differs from the served file")
    -- The targets are 4 ms and 0.8x. On a loaded 2-core machine (the
    -- transfer thread and the mock's nginx take both cores) the system may
    -- stop the loop's thread for a while: so the longest step is measured in
    -- the CPU time of the loop's thread (what the step cost), and 95% of the
    -- steps within the target on the wall clock.
    -- (The 4 ms itself is a benchmark target, bench/README.md: here the
    -- bound is twice it, so that a step that moves bytes, 20 ms for a 20 MB
    -- download, fails, and a garbage-collection cycle on a loaded machine does not.)
    assert.is_true(longest < 0.008, fmt("longest step(0): %s of CPU (%d frames)", ms(longest), #steps))
    assert.is_true(quantile(steps, 0.95) < 0.004, fmt("95%% of %d steps under %s", #steps, ms(quantile(steps, 0.95))))
    assert.is_true(up_time < math.max(up_blocking * 2, 1), fmt("upload: %.2f s in the loop, %.2f s blocking",
      up_time, up_blocking))
    assert.is_true(down_time < math.max(down_blocking * 2, 1), fmt("download: %.2f s in the loop, %.2f s blocking",
      down_time, down_blocking))
  end)

  it("viggle.configure{step_budget} bounds the time step() spends running ready tasks", function()
    viggle.configure({ step_budget = 0.001 })
    finally(function() viggle.configure({ step_budget = 0.002 }) end)
    local ran = 0
    for _ = 1, 50 do
      viggle.spawn(function()
        local t = now()
        while now() - t < 0.0005 do end -- half a millisecond of work
        ran = ran + 1
      end)
    end
    local steps, live = {}, 1
    while live > 0 do
      local s = now()
      live = viggle.step(0)
      steps[#steps + 1] = now() - s
    end
    assert.are.equal(50, ran)
    assert.is_true(#steps >= 12, "steps: " .. #steps) -- 25 ms of work, 1 ms a step
    -- each step stops at the first task that ends after the budget: 1 ms
    -- plus at most one task (0.5 ms), unless the system stops the process
    assert.is_true(quantile(steps, 0.5) < 0.0016, "median step: " .. ms(quantile(steps, 0.5)))
  end)
end)
