-- The CLI's exit codes when jobs end differently, its numeric options, its
-- help texts and file names: bin/viggle run as a process, in a directory of
-- its own.
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local ROOT = (mock_server.dir:gsub("/spec/mock$", ""))

describe("the viggle CLI's exit codes and options", function()
  local m, tmp

  setup(function()
    m = assert(mock_server.start())
    tmp = m.prefix .. "/cli-exit"
    os.execute("mkdir -p " .. tmp)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function() m:reset() end)

  -- runs bin/viggle in tmp; returns the exit code, stdout and stderr
  local function viggle(args)
    local rc = tonumber(support.capture(string.format("cd %s && VIGGLE_BASE_URL=%s VIGGLE_API_KEY=sk-test-valid "
      .. "%s %s %s >out 2>err </dev/null; echo $?", support.q(tmp), m.base_url, support.interp,
      support.q(ROOT .. "/bin/viggle"), args)))
    return rc, support.read_file(tmp .. "/out"), support.read_file(tmp .. "/err")
  end

  it("wait exits with the first failing job's code, and with 1 when any job had an error", function()
    m:job({ id = "j_ok" })
    m:job({ id = "j_failed", outcome = "failed" })
    m:job({ id = "j_cancelled", outcome = "cancelled" })
    local cases = {
      { "j_ok j_failed", 3 }, { "j_failed j_ok", 3 },
      { "j_failed j_cancelled", 3 }, { "j_cancelled j_failed", 4 },
      { "j_unknown j_failed", 1 }, { "j_failed j_unknown", 1 }, { "j_cancelled j_unknown j_failed", 1 },
    }
    for _, case in ipairs(cases) do
      m:reset()
      m:job({ id = "j_ok" })
      m:job({ id = "j_failed", outcome = "failed" })
      m:job({ id = "j_cancelled", outcome = "cancelled" })
      local rc = viggle("wait --interval 0 " .. case[1])
      assert.are.equal(case[2], rc, "viggle wait " .. case[1])
    end
  end)

  it("takes 0 for numeric options", function()
    m:job({ id = "j_zero" })
    assert.are.equal(0, (viggle("wait --interval 0 j_zero")))
    m:job({ id = "j_now", outcome = "stuck" })
    assert.are.equal(5, (viggle("wait --timeout 0 j_now")))
    local rc, _, err = viggle("wait --interval -1 j_zero")
    assert.are.equal(2, rc)
    assert.matches("non%-negative", err)
  end)

  it("has a help text for every command, and its exit codes are the ones it uses", function()
    for _, cmd in ipairs({ "status", "wait", "render", "cancel", "download", "credits" }) do
      local rc, out = viggle(cmd .. " --help")
      assert.are.equal(0, rc, cmd)
      assert.matches("^Usage: viggle " .. cmd, out)
    end
    local usage = require("viggle.cli_help").usage
    local EXIT = require("viggle.cli").EXIT
    local words = { ok = "done", error = "error", usage = "usage", failed = "job failed",
                    cancelled = "job cancelled", timeout = "timed out", interrupted = "interrupted" }
    for name, code in pairs(EXIT) do
      assert.truthy(usage:find(code .. " " .. words[name], 1, true), name)
    end
  end)

  it("download names the mask file apart from the video", function()
    local c = assert(require("viggle").new({ base_url = m.base_url }))
    local id = m:job({ id = "j_tr", transparent = true })
    assert(c:await(id, { interval = 0.001 }))
    assert.are.equal(0, (viggle("download --mask j_tr")))
    assert.are.equal(0, (viggle("download j_tr")))
    assert.are.equal(support.read_file("spec/mock/files/mask.mp4"), support.read_file(tmp .. "/j_tr-mask.mp4"))
    assert.are.equal(support.read_file("spec/mock/files/demo.mp4"), support.read_file(tmp .. "/j_tr.mp4"))
  end)
end)
