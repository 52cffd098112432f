-- The CLI in a pipe: --json stdout holds only JSON (the API's own text),
-- people's lines go to stderr, many ids and "-" for stdin, the exit code of
-- several jobs, --verbose, Ctrl-C during render --wait, download -o DIR.
local mock_server = require("spec.mock.server")
local cjson = require("cjson")
local support = require("spec.support")

local q, read_file = support.q, support.read_file
local KEY = "sk-test-valid"

describe("the viggle CLI in a pipe", function()
  local m, tmp

  setup(function()
    m = assert(mock_server.start())
    tmp = m.prefix .. "/pipes"
    os.execute("mkdir -p " .. q(tmp))
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function() m:reset() end)

  -- bin/viggle with args (shell text) and stdin (text or nil); rc, stdout, stderr
  local function viggle(args, stdin, env)
    return support.viggle_cli(tmp, env or ("VIGGLE_BASE_URL=" .. m.base_url .. " VIGGLE_API_KEY=" .. KEY), args, stdin)
  end

  local function lines(text)
    local t = {}
    for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
    return t
  end

  local function finish(id) -- a poll-mode job made complete
    for _ = 1, 6 do m:control("GET", "/api/render/" .. id) end
  end

  it("status --json prints the API's answer as it came: [] stays an array, null stays null", function()
    m:job({ id = "job_raw" })
    local rc, out, err = viggle("status --json job_raw")
    assert.are.equal(0, rc, err)
    assert.are.equal(1, #lines(out))
    assert.matches('"chunks": ?%[%]', out)
    assert.matches('"progress": ?null', out)
    assert.are.equal("job_raw", cjson.decode(out).job_id)
  end)

  it("status and cancel take many ids, and - reads them from stdin, one a line", function()
    m:job({ id = "job_s1" })
    m:job({ id = "job_s2" })
    local rc, out = viggle("status --json job_s1 - job_s1", "job_s2\n\n  job_s1  \n")
    assert.are.equal(0, rc)
    local got = {}
    for _, l in ipairs(lines(out)) do got[#got + 1] = cjson.decode(l).job_id end
    assert.are.same({ "job_s1", "job_s2", "job_s1", "job_s1" }, got)
    m:job({ id = "job_c1", outcome = "stuck" })
    m:job({ id = "job_c2", outcome = "stuck" })
    rc, out = viggle("cancel -", "job_c1\njob_c2\n")
    assert.are.equal(0, rc)
    assert.are.equal("cancelled job_c1\ncancelled job_c2\n", out)
    assert.are.equal("cancelled", m:job_state("job_c2").view.status)
  end)

  it("status of several ids goes on past an error and exits 1; --json says the error as JSON", function()
    m:job({ id = "job_ok" })
    local rc, out, err = viggle("status --json job_none job_ok")
    assert.are.equal(1, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.are.equal("not_found", cjson.decode(l[1]).error.kind)
    assert.are.equal("job_ok", cjson.decode(l[2]).job_id)
    assert.matches("^viggle: not_found: ", err)
  end)

  it("wait - reads ids from stdin; never sends '-' as an id", function()
    local ids = m:jobs({ count = 2, id = "stdin" })
    local rc, out = viggle("wait --json --interval 0.01 -", table.concat(ids, "\n") .. "\n")
    assert.are.equal(0, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.are.equal(ids[1], cjson.decode(l[1]).job_id)
    assert.are.equal(ids[2], cjson.decode(l[2]).job_id)
    for _, r in ipairs(m:log()) do assert.is_nil(r.uri:find("/api/render/-", 1, true)) end
  end)

  it("wait --json: one line per job, a failed job keeps its last status, said once on stderr", function()
    m:job({ id = "job_done" })
    m:job({ id = "job_bad", outcome = "failed" })
    local rc, out, err = viggle("wait --json --interval 0.01 job_done job_bad")
    assert.are.equal(3, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.matches('"chunks": ?%[', l[1])
    local bad = cjson.decode(l[2])
    assert.are.equal("job_bad", bad.job_id)
    assert.are.equal("job_failed", bad.error.kind)
    assert.are.equal("failed", bad.job.status)
    local said = 0
    for _ in err:gmatch("job_failed") do said = said + 1 end
    assert.are.equal(1, said, err)
  end)

  it("exit code of several jobs: 1 error > 5 timed out > 3 failed > 4 cancelled > 0", function()
    m:job({ id = "job_f", outcome = "failed" })
    m:job({ id = "job_c", outcome = "cancelled" })
    m:job({ id = "job_t", outcome = "stuck" })
    m:job({ id = "job_y" })
    local base = "wait --interval 0.01 --timeout 0.5 "
    assert.are.equal(4, (viggle(base .. "job_y job_c")))
    assert.are.equal(3, (viggle(base .. "job_c job_f job_y")))
    assert.are.equal(5, (viggle(base .. "job_f job_t job_c")))
    assert.are.equal(1, (viggle(base .. "job_t job_none job_f")))
    local _, help = viggle("wait --help")
    assert.matches("1 error > 5 timed out > 3 failed > 4 cancelled > 0", help, 1, true)
  end)

  it("render --wait -o F --json: stdout is one JSON document, the rest on stderr", function()
    m:config({ render_job = { advance = "time", step = 0.02 } })
    local file = tmp .. "/one.mp4"
    os.remove(file)
    local rc, out, err = viggle("render --json --character char_1 --scene scene_1 --wait --interval 0.02 -o "
      .. q(file))
    assert.are.equal(0, rc, err)
    assert.are.equal(1, #lines(out))
    assert.are.equal("complete", cjson.decode(out).status)
    assert.matches("started job_", err)
    assert.matches("saved " .. file:gsub("%p", "%%%0"), err)
    assert.are.equal(read_file("spec/mock/files/demo.mp4"), read_file(file))
  end)

  it("download -o DIR writes DIR/<job_id>.mp4; a path that is no directory is the file", function()
    m:job({ id = "job_dl" })
    finish("job_dl")
    local dir = tmp .. "/videos"
    os.execute("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
    local rc, out, err = viggle("download job_dl -o " .. q(dir))
    assert.are.equal(0, rc, err)
    assert.are.equal(read_file("spec/mock/files/demo.mp4"), read_file(dir .. "/job_dl.mp4"))
    assert.matches("saved " .. (dir .. "/job_dl.mp4"):gsub("%p", "%%%0"), out)
    rc = viggle("download job_dl --overwrite -o " .. q(dir .. "/"))
    assert.are.equal(0, rc)
    assert.is_true(support.run_ok("test -d " .. q(dir))) -- the directory is still one
    local file = tmp .. "/named.mp4"
    os.remove(file)
    rc = viggle("download job_dl -o " .. q(file))
    assert.are.equal(0, rc)
    assert.are.equal(read_file("spec/mock/files/demo.mp4"), read_file(file))
  end)

  it("--verbose shows each request (method, URL, status, time) on stderr, never the key", function()
    m:job({ id = "job_v" })
    m:fault({ match = "/api/render/job_v", kind = "status", status = 503, retry_after = "0" })
    assert.are.equal(2, (viggle("--verbose status job_v"))) -- --verbose belongs after the command
    local rc, out, err = viggle("status --verbose job_v")
    assert.are.equal(0, rc, err)
    assert.matches("^job_v\n", out)
    assert.matches("viggle: GET " .. m.base_url:gsub("%p", "%%%0") .. "/api/render/job_v %-> 503 %(%d+ ms%)", err)
    assert.matches("viggle: GET [^\n]*/api/render/job_v %-> 200 %(%d+ ms%)", err)
    assert.is_nil((out .. err):find(KEY, 1, true))
    -- and the retries of a wait
    m:fault({ match = "/api/render/job_v", kind = "status", status = 503 })
    rc, out, err = viggle("wait --verbose --interval 0.01 job_v")
    assert.matches("^video: ", out)
    assert.are.equal(0, rc)
    assert.matches("viggle: retry in [%d.]+ s after: viggle: http: ", err)
  end)

  it("an --interval under a second is refused (exit 2) for a remote API, before any render", function()
    local rc, _, err = viggle("render --character c --scene s --wait --interval 0.2",
      nil, "VIGGLE_BASE_URL=https://apis.example.invalid VIGGLE_API_KEY=" .. KEY)
    assert.are.equal(2, rc)
    assert.matches("bad option 'interval'", err)
    rc, _, err = viggle("wait --interval 0 job_x", nil, "VIGGLE_BASE_URL=https://apis.example.invalid")
    assert.are.equal(2, rc)
    assert.matches("at least 1 second", err)
  end)

  -- render --wait in the background, Ctrl-C after `after` seconds: rc, stderr
  local function interrupt(flags, after)
    m:config({ render_job = { outcome = "stuck" } })
    local cmd = string.format("cd %s && (VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s %s bin/viggle render --character c "
      .. "--scene s --wait --interval 0.05 %s >%s 2>%s </dev/null & pid=$!; sleep %s; kill -INT $pid; wait $pid; "
      .. "echo $?)", q(support.root), m.base_url, KEY, support.interp, flags, q(tmp .. "/out"), q(tmp .. "/err"),
      after)
    local rc = tonumber(support.capture(cmd))
    return rc, read_file(tmp .. "/err") or ""
  end

  it("Ctrl-C during render --wait names the job and the commands to follow or cancel it", function()
    local rc, err = interrupt("", 0.8)
    assert.are.equal(130, rc)
    local id = err:match("started (job_%w+)")
    assert.is_string(id, err)
    assert.matches("viggle: job " .. id .. " is still running", err)
    assert.matches("viggle wait " .. id, err)
    assert.matches("viggle cancel " .. id, err)
    assert.are_not.equal("cancelled", m:job_state(id).view.status)
  end)

  it("--cancel-on-interrupt cancels the job on Ctrl-C", function()
    local rc, err = interrupt("--cancel-on-interrupt", 0.8)
    assert.are.equal(130, rc)
    local id = err:match("started (job_%w+)")
    assert.is_string(id, err)
    assert.matches("viggle: cancelled " .. id, err)
    assert.are.equal("cancelled", m:job_state(id).view.status)
  end)
end)
