-- Run by spec/hosts/nvim_spec.lua inside headless Neovim:
--   nvim --headless --clean -u NONE -i NONE -n -c "luafile spec/hosts/nvim_script.lua"
-- Environment: VIGGLE_ROOT (this checkout), VIGGLE_BUILD_DIR (its build/jit), VIGGLE_BASE_URL (the mock),
-- VIGGLE_NVIM_OUT (where the JSON results go), VIGGLE_NVIM_IDS (comma-separated
-- job ids for await_all), VIGGLE_NVIM_JOIN_ID (a job awaited by a blocking
-- join outside any task), VIGGLE_NVIM_STATUS_ID (for :Viggle status),
-- VIGGLE_NVIM_SLOW_ID (a job whose status answer the mock delays: a control,
-- fetched outside any task, that shows the timer gap does see a stall).
-- It never asserts: it records what happened, writes it and quits (qa!),
-- after at most HARD_LIMIT_MS whatever happens.
-- luacheck: globals vim

local HARD_LIMIT_MS = 20000

local root = assert(os.getenv("VIGGLE_ROOT"), "VIGGLE_ROOT not set")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = assert(os.getenv("VIGGLE_BUILD_DIR"), "VIGGLE_BUILD_DIR not set") .. "/?.so;" .. package.cpath

local uv = vim.uv or vim.loop
local out_path = assert(os.getenv("VIGGLE_NVIM_OUT"), "VIGGLE_NVIM_OUT not set")
local base_url = os.getenv("VIGGLE_BASE_URL")
local ids = vim.split(os.getenv("VIGGLE_NVIM_IDS") or "", ",", { trimempty = true })
local join_id = os.getenv("VIGGLE_NVIM_JOIN_ID")
local status_id = os.getenv("VIGGLE_NVIM_STATUS_ID")
local slow_id = os.getenv("VIGGLE_NVIM_SLOW_ID")

local function now() return uv.hrtime() / 1e9 end

local R = {
  errors = {},
  nvim_version = tostring(vim.version().major) .. "." .. vim.version().minor .. "." .. vim.version().patch,
  jit_version = jit and jit.version or nil,
  progress_calls = 0, progress_fast = 0, progress_api_ok = 0, progress_api_errors = {},
  update_calls = 0, update_fast = 0,
  timer_ticks = 0, timer_fast = 0, gap_await_all_ms = 0, gap_join_ms = 0, gap_blocking_ms = 0,
}

local finished = false
local function finish(why)
  if finished then return end
  finished = true
  R.finished_by = why
  local ok, text = pcall(vim.fn.json_encode, R)
  if not ok then text = '{"errors": ["json_encode failed: ' .. tostring(text):gsub('["\\]', "") .. '"]}' end
  local f = io.open(out_path, "w")
  if f then
    f:write(text)
    f:close()
  end
  vim.cmd("qa!")
end

local function fail(msg)
  R.errors[#R.errors + 1] = tostring(msg)
  finish("error")
end

-- Whatever happens, Neovim quits after HARD_LIMIT_MS.
vim.defer_fn(function()
  R.hard_timeout = true
  finish("hard timeout")
end, HARD_LIMIT_MS)

-- The host's own 10 ms timer: its callback is a fast event (a libuv callback),
-- which also shows that the in_fast_event check below can tell the two apart.
local phase = "await_all"
local last_tick = now()
local timer = uv.new_timer()
timer:start(10, 10, function()
  local t = now()
  local gap = (t - last_tick) * 1000
  last_tick = t
  R.timer_ticks = R.timer_ticks + 1
  if vim.in_fast_event() then R.timer_fast = R.timer_fast + 1 end
  if phase == "await_all" and gap > R.gap_await_all_ms then R.gap_await_all_ms = gap end
  if phase == "join" and gap > R.gap_join_ms then R.gap_join_ms = gap end
  if phase == "blocking" and gap > R.gap_blocking_ms then R.gap_blocking_ms = gap end
end)

local ok, err = xpcall(function()
  local viggle = require("viggle.nvim").setup({ client = { base_url = base_url, timeout = 5 } })
  R.viggle_version = viggle.VERSION
  R.setup_twice_same = require("viggle.nvim").setup() == viggle
  R.has_command = vim.fn.exists(":Viggle") == 2
  local c = assert(viggle.new({ base_url = base_url, timeout = 5 }))
  local buf = vim.api.nvim_create_buf(false, true)

  local function on_progress(job)
    R.progress_calls = R.progress_calls + 1
    if vim.in_fast_event() then R.progress_fast = R.progress_fast + 1 end
    local api_ok, api_err = pcall(vim.api.nvim_buf_set_lines, buf, -1, -1, false,
      { job.job_id .. " " .. job.status })
    if api_ok then
      R.progress_api_ok = R.progress_api_ok + 1
    else
      R.progress_api_errors[#R.progress_api_errors + 1] = tostring(api_err)
    end
  end
  local function on_update()
    R.update_calls = R.update_calls + 1
    if vim.in_fast_event() then R.update_fast = R.update_fast + 1 end
  end

  -- Phase 4 (the control): a status call outside any task blocks the editor
  -- for the whole transfer (the mock delays this one); the timer sees it.
  local function phase_blocking()
    phase = "blocking"
    last_tick = now()
    local t0 = now()
    local job, serr = c:status(slow_id)
    R.blocking = { status = job and job.status, err = serr and tostring(serr), seconds = now() - t0 }
    -- let the timer fire once more to measure the gap, then quit
    vim.defer_fn(function() finish("done") end, 50)
  end

  -- Phase 3: :Viggle status, its answer caught from vim.notify.
  local function phase_command()
    phase = "command"
    local notify = vim.notify
    vim.notify = function(msg, level)
      R.notify = R.notify or {}
      R.notify[#R.notify + 1] = { msg = msg, level = level, fast = vim.in_fast_event() }
      vim.notify = notify
      vim.schedule(phase_blocking)
    end
    vim.cmd("Viggle status " .. status_id)
  end

  -- Phase 2: a wait outside any task, from a scheduled callback: task:join
  -- drives the loop through vim.wait instead of spinning.
  local function phase_join()
    phase = "join"
    local t0 = now()
    local task = viggle.spawn(function() return c:await(join_id, { interval = 0.05 }) end)
    local jok, job, jerr = task:join()
    R.join = { ok = jok, status = job and job.status, err = jerr and tostring(jerr),
               seconds = now() - t0, task_state = task:state() }
    vim.schedule(phase_command)
  end

  -- Phase 1: await_all in a task while the timer runs.
  local t0 = now()
  local task = viggle.spawn(function()
    local results, summary = c:await_all(ids, { interval = 0.05, on_progress = on_progress,
                                                on_update = on_update })
    R.await_all_seconds = now() - t0
    R.summary = { total = summary.total, complete = summary.complete, failed = summary.failed,
                  errors = summary.errors, cancelled = summary.cancelled }
    R.results = {}
    for i, r in ipairs(results) do
      R.results[i] = viggle.is_error(r) and { err = tostring(r) } or { job_id = r.job_id, status = r.status }
    end
    R.buffer_lines = vim.api.nvim_buf_line_count(buf)
    R.task_fast = vim.in_fast_event()
    vim.schedule(phase_join)
  end)
  R.task_state_after_spawn = task:state()
  -- A task that raises would never reach phase 2: report it.
  local watch = uv.new_timer()
  watch:start(50, 50, vim.schedule_wrap(function()
    local st = task:state()
    if st == "failed" or st == "cancelled" then
      watch:stop()
      fail("await_all task " .. st .. ": " .. tostring(task.error))
    elseif st == "done" then
      watch:stop()
    end
  end))
end, debug.traceback)
if not ok then fail(err) end
