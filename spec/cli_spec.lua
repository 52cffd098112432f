-- The viggle command line, run as a user would: a process, its output, its exit code.
local mock_server = require("spec.mock.server")
local cjson = require("cjson")

local support = require("spec.support")
local INTERP = support.interp
local KEY = "sk-test-valid"

describe("the viggle CLI", function()
  local m, tmp

  setup(function()
    m = assert(mock_server.start())
    tmp = m.prefix .. "/cli"
    os.execute("mkdir -p " .. tmp)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function() m:reset() end)

  -- runs bin/viggle with args (a shell-quoted string); returns rc, stdout, stderr
  local function viggle(args, env)
    return support.viggle_cli(tmp, env or ("VIGGLE_BASE_URL=" .. m.base_url .. " VIGGLE_API_KEY=" .. KEY), args)
  end

  it("prints usage with --help and for no command", function()
    local rc, out = viggle("--help")
    assert.are.equal(0, rc)
    assert.matches("Usage: viggle COMMAND", out)
    for _, cmd in ipairs({ "status", "wait", "render", "cancel", "download", "credits" }) do
      rc, out = viggle(cmd .. " --help")
      assert.are.equal(0, rc)
      assert.matches("Usage: viggle " .. cmd, out)
    end
    rc = viggle("")
    assert.are.equal(2, rc)
  end)

  it("exits 2 with a hint for an unknown command or option, or a missing argument", function()
    local rc, _, err = viggle("frobnicate")
    assert.are.equal(2, rc)
    assert.matches("unknown command 'frobnicate'", err)
    rc, _, err = viggle("status --colour job_1")
    assert.are.equal(2, rc)
    assert.matches("unknown option %-%-colour", err)
    assert.matches("viggle status %-%-help", err)
    rc, _, err = viggle("wait --interval")
    assert.are.equal(2, rc)
    assert.matches("needs a value", err)
    rc = viggle("status")
    assert.are.equal(2, rc)
  end)

  it("status prints the job, and --json prints it as JSON", function()
    m:job({ id = "job_cli" })
    local rc, out = viggle("status job_cli")
    assert.are.equal(0, rc)
    assert.matches("^job_cli\n", out)
    assert.matches("status: +queued", out)
    rc, out = viggle("status --json job_cli")
    assert.are.equal(0, rc)
    local job = cjson.decode(out)
    assert.are.equal("processing", job.status)
    assert.are.equal("ref_done", job.checkpoint)
  end)

  it("status reports errors on stderr with exit 1, and refuses a bad id", function()
    local rc, out, err = viggle("status job_none")
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.matches("^viggle: not_found: ", err)
    rc, out, err = viggle("status 'a/b'")
    assert.are.equal("", out)
    assert.are.equal(1, rc)
    assert.matches("invalid_argument", err)
  end)

  it("wait exits 0, 3, 4 and 5 for complete, failed, cancelled and timeout", function()
    m:job({ id = "job_w1" })
    m:job({ id = "job_w2", outcome = "failed" })
    m:job({ id = "job_w3", outcome = "cancelled" })
    m:job({ id = "job_w4", outcome = "stuck" })
    local rc, out, progress = viggle("wait --interval 0.01 job_w1")
    assert.are.equal(0, rc)
    assert.matches("job_w1 +complete", progress) -- people's lines on stderr
    assert.matches("^video: http[^\n]*\n$", out)
    local _, err
    rc, _, err = viggle("wait --interval 0.01 job_w2")
    assert.are.equal(3, rc)
    assert.matches("job_failed", err)
    rc = viggle("wait --interval 0.01 job_w3")
    assert.are.equal(4, rc)
    rc, _, err = viggle("wait --interval 0.01 --timeout 0.3 job_w4")
    assert.are.equal(5, rc)
    assert.matches("timeout", err)
  end)

  it("wait follows several jobs and prints one line per change (not a terminal)", function()
    local ids = m:jobs({ count = 3, id = "multi" })
    local rc, out, err = viggle("wait --interval 0.01 " .. table.concat(ids, " "))
    assert.are.equal(0, rc)
    for _, id in ipairs(ids) do
      assert.matches("\n?" .. id:gsub("%p", "%%%0") .. " http://[^\n]+/video/", out) -- stdout: id and video
    end
    out = err
    for _, id in ipairs(ids) do
      local n = 0
      for _ in out:gmatch(id:gsub("%p", "%%%0") .. " +[%w]+") do n = n + 1 end
      assert.are.equal(6, n) -- queued, four stages, complete
    end
    assert.is_nil(out:find("\27[", 1, true)) -- no terminal codes in a pipe
  end)

  it("wait --json prints each final job as a JSON line", function()
    m:job({ id = "job_j" })
    local rc, out = viggle("wait --json --interval 0.01 job_j job_none")
    assert.are.equal(1, rc)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
    assert.are.equal("complete", lines[1].status)
    assert.are.equal("not_found", lines[2].error.kind)
  end)

  it("render --wait -o renders, follows and downloads", function()
    m:config({ render_job = { advance = "time", step = 0.05 } })
    local out_file = tmp .. "/video.mp4"
    os.remove(out_file)
    local rc, out, err = viggle("render --image spec/mock/files/character.png --video spec/mock/files/demo.mp4 "
      .. "--background solid --bg-color 0,255,0 --wait --interval 0.02 -o " .. out_file)
    assert.are.equal(0, rc, err)
    assert.matches("started job_", err)
    assert.matches("saved " .. out_file:gsub("%p", "%%%0"), out)
    local f = assert(io.open(out_file, "rb"))
    local got = f:read("*a")
    f:close()
    f = assert(io.open("spec/mock/files/demo.mp4", "rb"))
    assert.are.equal(f:read("*a"), got)
    f:close()
    local form
    for _, r in ipairs(m:log()) do if r.method == "POST" then form = r.form end end
    assert.are.equal("0,255,0", form.bg_color.value)
    assert.are.equal("solid", form.background_mode.value)
  end)

  it("render without --wait prints the job id; a bad flag value is refused before sending", function()
    local rc, out = viggle("render --character char_1 --scene scene_1")
    assert.are.equal(0, rc)
    assert.matches("^job_%w+\n$", out)
    local _, err
    rc, _, err = viggle("render --character c --scene s --background sparkly")
    assert.are.equal(1, rc)
    assert.matches("invalid_argument: background_mode", err)
    rc, _, err = viggle("render --character c -o x.mp4")
    assert.are.equal(2, rc)
    assert.matches("%-o needs %-%-wait", err)
  end)

  it("download and cancel", function()
    m:job({ id = "job_d" })
    for _ = 1, 6 do m:control("GET", "/api/render/job_d") end
    local file = tmp .. "/d.mp4"
    os.remove(file)
    local rc, out = viggle("download job_d -o " .. file)
    assert.are.equal(0, rc)
    assert.matches("saved", out)
    local _, err
    rc, _, err = viggle("download job_d -o " .. file)
    assert.are.equal(1, rc)
    assert.matches("exists", err)
    m:job({ id = "job_k", outcome = "stuck" })
    rc, out = viggle("cancel job_k")
    assert.are.equal(0, rc)
    assert.matches("cancelled job_k", out)
  end)

  it("wait stops cleanly on Ctrl-C (SIGINT) with exit 130", function()
    m:job({ id = "job_forever", outcome = "stuck" })
    local cmd = string.format("cd '%s' && (VIGGLE_BASE_URL=%s %s bin/viggle wait --interval 0.05 job_forever "
      .. ">%s/out 2>%s/err </dev/null & pid=$!; sleep 0.6; kill -INT $pid; wait $pid; echo $?)",
      os.getenv("PWD"), m.base_url, INTERP, tmp, tmp)
    local p = assert(io.popen(cmd))
    local rc = tonumber(p:read("*a"))
    p:close()
    local f = assert(io.open(tmp .. "/err"))
    local err = f:read("*a")
    f:close()
    assert.are.equal(130, rc)
    assert.matches("viggle: interrupted", err)
    assert.matches("job_forever +processing", err)
  end)

  it("never prints the API key, whatever the server says", function()
    m:job({ id = "job_leak" })
    m:fault({ match = "/api/render/job_leak", kind = "status", status = 400,
              body = '{"detail":{"error_code":"CS-UORC01-002","message":"your key ' .. KEY .. ' is odd"}}' })
    local rc, out, err = viggle("status job_leak")
    assert.are.equal(1, rc)
    assert.is_nil((out .. err):find(KEY, 1, true))
    assert.matches("%[redacted%]", err)
    rc, out, err = viggle("credits")
    assert.are.equal(0, rc)
    assert.matches("balance: 100", out)
    assert.is_nil((out .. err):find(KEY, 1, true))
  end)

  it("says clearly when no key is set for a command that needs one", function()
    local rc, _, err = viggle("cancel job_x", "VIGGLE_BASE_URL=" .. m.base_url .. " VIGGLE_API_KEY=")
    assert.are.equal(1, rc)
    assert.matches("auth: no API key: set VIGGLE_API_KEY", err)
  end)
end)
