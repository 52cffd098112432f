-- Neovim as the host: headless nvim (its own LuaJIT) loads this checkout's
-- viggle and build/jit/viggle/core.so, sets up viggle.nvim and awaits 20
-- mock jobs in a task while a 10 ms vim.loop timer keeps firing. The script
-- (spec/hosts/nvim_script.lua) records what it saw as JSON; this spec reads it.
-- Only under LuaJIT: the module nvim loads is the one built for LuaJIT.
if type(jit) ~= "table" then return end

local cjson = require("cjson")
local mock_server = require("spec.mock.server")
local support = require("spec.support")
local q, read_file, capture = support.q, support.read_file, support.capture

local ROOT, BUILD = support.root, support.build_dir("jit")
local NVIM = os.getenv("VIGGLE_NVIM") or "nvim"
local JOBS = 20

describe("Neovim host (headless nvim, viggle.nvim on vim.loop)", function()
  local m, R, out, log

  setup(function()
    assert(read_file(BUILD .. "/viggle/core.so"), "build/jit/viggle/core.so is missing: run make LUA=jit")
    assert(capture("command -v " .. NVIM):match("%S"), NVIM .. " not found (Debian package neovim)")
    m = assert(mock_server.start())
    m:config({ delay = 0.02 })
    local ids = m:jobs({ count = JOBS, id = "nvjob" })
    local join_id = m:job({ id = "nvjoin" })
    local status_id = m:job({ id = "nvstatus" })
    local slow_id = m:job({ id = "nvslow" })
    m:fault({ match = "/api/render/" .. slow_id, kind = "slow", delay = 0.3 })
    out = os.tmpname()
    log = os.tmpname()
    os.remove(out)
    local env = table.concat({
      "VIGGLE_ROOT=" .. q(ROOT), "VIGGLE_BUILD_DIR=" .. q(BUILD),
      "VIGGLE_BASE_URL=" .. q(m.base_url), "VIGGLE_NVIM_OUT=" .. q(out),
      "VIGGLE_NVIM_IDS=" .. q(table.concat(ids, ",")), "VIGGLE_NVIM_JOIN_ID=" .. q(join_id),
      "VIGGLE_NVIM_STATUS_ID=" .. q(status_id), "VIGGLE_NVIM_SLOW_ID=" .. q(slow_id),
      "VIGGLE_API_KEY=",
    }, " ")
    -- nvim 0.7 has no -l: luafile runs the script. The script quits by
    -- itself after 20 s at most; timeout(1) is the second guard.
    local cmd = "cd " .. q(ROOT) .. " && env " .. env .. " timeout -k 5 60 " .. q(NVIM)
      .. " --headless --clean -u NONE -i NONE -n -c " .. q("luafile spec/hosts/nvim_script.lua")
      .. " </dev/null >" .. q(log) .. " 2>&1"
    os.execute(cmd)
    local text = read_file(out)
    assert(text, "nvim wrote no results; its output:\n" .. (read_file(log) or ""))
    R = cjson.decode(text)
  end)

  teardown(function()
    if m then m:stop() end
    if out then os.remove(out) end
    if log then os.remove(log) end
  end)

  it("runs the script to its end, with no error", function()
    assert.are.same({}, R.errors)
    assert.is_nil(R.hard_timeout)
    assert.are.equal("done", R.finished_by)
    assert.is_true(R.setup_twice_same)
    assert.is_true(R.has_command)
    assert.matches("^LuaJIT", R.jit_version)
  end)

  it("completes all 20 jobs, in input order", function()
    assert.are.same({ total = JOBS, complete = JOBS, failed = 0, errors = 0, cancelled = 0 }, R.summary)
    for i = 1, JOBS do
      assert.are.same({ job_id = "nvjob-" .. i, status = "complete" }, R.results[i])
    end
    -- every job was polled 6 times (queued, 4 x processing, complete)
    local polls = 0
    for _, r in ipairs(m:log()) do
      if r.uri:match("^/api/render/nvjob%-") then polls = polls + 1 end
    end
    assert.are.equal(JOBS * 6, polls)
  end)

  it("calls on_progress on the main loop, never in a fast event, where vim.api works", function()
    assert.are.equal(JOBS * 6, R.progress_calls) -- every change of every job
    assert.are.equal(0, R.progress_fast)
    assert.are.equal(R.progress_calls, R.progress_api_ok)
    assert.are.same({}, R.progress_api_errors)
    assert.are.equal(R.progress_calls + 1, R.buffer_lines) -- the lines really are in the buffer
    assert.is_true(R.update_calls > 0)
    assert.are.equal(0, R.update_fast)
    assert.is_false(R.task_fast)
    -- the timer's callbacks are fast events: the check can tell the two apart
    assert.are.equal(R.timer_ticks, R.timer_fast)
  end)

  it("never stalls the editor's loop: a 10 ms timer's largest gap stays well under 100 ms", function()
    assert.is_true(R.timer_ticks > 20, "ticks: " .. tostring(R.timer_ticks))
    assert.is_true(R.gap_await_all_ms < 100, string.format("largest gap during await_all: %.1f ms",
      R.gap_await_all_ms))
  end)

  it("the gap does see a stall: a status call outside any task blocks the loop for its transfer", function()
    assert.are.equal("queued", R.blocking.status)
    assert.is_true(R.blocking.seconds >= 0.3, tostring(R.blocking.seconds))
    assert.is_true(R.gap_blocking_ms >= 290, string.format("gap: %.1f ms", R.gap_blocking_ms))
  end)

  it("task:join outside a task turns the loop (vim.wait) instead of spinning", function()
    assert.are.same("done", R.join.task_state)
    assert.is_true(R.join.ok)
    assert.are.equal("complete", R.join.status)
    assert.is_true(R.gap_join_ms < 100, string.format("largest gap during join: %.1f ms", R.gap_join_ms))
  end)

  it("task:join outside a task ends with its task, not a turn of vim.wait (1 s) per transfer later", function()
    -- the join follows a job through 6 polls 0.05 s apart: well under a second
    assert.is_true(R.join.seconds < 3, string.format("join took %.2f s", R.join.seconds))
  end)

  it(":Viggle status answers through vim.notify on the main loop", function()
    assert.are.equal(1, #R.notify)
    assert.are.equal("viggle: nvstatus: queued, 0%", R.notify[1].msg)
    assert.is_false(R.notify[1].fast)
  end)
end)
