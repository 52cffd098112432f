--- The viggle command line. bin/viggle calls main(arg); main returns the exit code.
local core = require("viggle.core")
local viggle = require("viggle")
local cjson = require("cjson.safe")

local format, floor, min, max, concat, huge = string.format, math.floor, math.min, math.max, table.concat, math.huge

-- The client of this run: its key never goes out on stdout or stderr,
-- whatever a server echoed into a job or an error (every write is redacted).
local current
local function redacting(f)
  return {
    write = function(self, ...)
      local s = concat({ ... })
      if current then s = require("viggle.http").redact(current, s) end
      f:write(s)
      return self
    end,
    flush = function() f:flush() end,
  }
end
local stdout, stderr = redacting(io.stdout), redacting(io.stderr)

local _M = {}

-- Exit codes (README.md lists them).
local EXIT = { ok = 0, error = 1, usage = 2, failed = 3, cancelled = 4, timeout = 5, interrupted = 130 }
_M.EXIT = EXIT

-- The help texts live in viggle.cli_help, read only when asked for.
local function help() return require("viggle.cli_help") end

local OPTIONS = {
  status = { json = false },
  wait = { json = false, interval = "number", timeout = "number", ["cancel-on-timeout"] = false, rate = "number" },
  render = { image = "string", ["image-url"] = "string", video = "string", ["video-url"] = "string",
             character = "string", scene = "string", mapping = "string", model = "string",
             background = "string", ["bg-color"] = "string", fast = false, wait = false,
             output = "string", mask = false, overwrite = false, interval = "number", timeout = "number",
             ["cancel-on-timeout"] = false, ["cancel-on-interrupt"] = false, json = false },
  cancel = { json = false },
  download = { output = "string", mask = false, overwrite = false },
  credits = { json = false },
  batch = { journal = "string", concurrency = "number", ["max-credits"] = "number", interval = "number",
            timeout = "number", ["resubmit-uncertain"] = false, ["allow-unknown-cost"] = false, json = false,
            redis = "string", name = "string", lease = "number", ["claims-log"] = "string" },
}
for _, spec in pairs(OPTIONS) do spec.verbose = false end -- every command takes --verbose
local SHORT = { o = "output", h = "help" }

local function usage_error(msg, cmd)
  stderr:write("viggle: ", msg, "\n", "Run 'viggle ", cmd and (cmd .. " ") or "", "--help' for usage.\n")
  return EXIT.usage
end

-- args -> options table, positional list; or nil, message
local function parse(spec, args, from)
  local opts, pos = {}, {}
  local i = from
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    end
    local name, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w-]+)$") end
    if not name then
      local s = a:match("^%-(%a)$")
      if s then name = SHORT[s] or s end
    end
    if name == "help" then
      opts.help = true
    elseif name then
      local kind = spec[name]
      if kind == nil then return nil, "unknown option --" .. name end
      if kind == false then
        if value then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = args[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        if kind == "number" then
          local n = tonumber(value)
          if not n or n < 0 then return nil, "--" .. name .. " needs a non-negative number, got " .. value end
          value = n
        end
        opts[name] = value
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

-- what ends as failed: a job, or a character or scene (viggle characters|scenes)
local FAILED = { job_failed = true, asset_failed = true }
-- a status that ends a wait well: a job's, an asset's
local DONE = { complete = true, ready = true }

-- The exit code of one result (a job or an error).
local function exit_code(r)
  if not viggle.is_error(r) then return EXIT.ok end
  if FAILED[r.kind] then return EXIT.failed end
  if r.kind == "job_cancelled" then return EXIT.cancelled end
  -- a wait that reached its deadline (not one request that timed out)
  if r.kind == "timeout" and (r.job or r.retryable == false) then return EXIT.timeout end
  return EXIT.error
end

-- Several jobs, one exit code: the worst wins, in this order (README.md and
-- --help say it): 1 error > 5 timed out > 3 failed > 4 cancelled > 0.
local RANK = { [EXIT.ok] = 0, [EXIT.cancelled] = 1, [EXIT.failed] = 2, [EXIT.timeout] = 3, [EXIT.error] = 4 }
local function worst(a, b) return RANK[b] > RANK[a] and b or a end
_M.worst = worst

local function fail(err)
  stderr:write(tostring(err), "\n")
  return exit_code(err)
end

-- A copy of a decoded answer with the key taken out of every text in it
-- (before encoding: an escaped key would not be found after).
local function clean(v)
  if type(v) == "string" then return current and require("viggle.http").redact(current, v) or v end
  if type(v) == "number" and not (v > -huge and v < huge) then return nil end -- JSON has no NaN, no inf
  if type(v) ~= "table" or v == cjson.null then return v end
  local t = {}
  for k, x in pairs(v) do t[clean(k)] = clean(x) end
  return setmetatable(t, getmetatable(v))
end

local function to_json(t)
  return (cjson.encode(clean(t)) or "{}"):gsub("\\/", "/")
end

-- An API answer as JSON: the text the API sent (arrays stay arrays, nulls
-- stay null), on one line.
local function answer_json(t)
  local raw = viggle.raw(t)
  if raw then return (raw:gsub("[\r\n]+", " ")) end
  return to_json(t)
end

-- An error as one JSON document: {job_id (or key), error: {...}, job: the last job seen}.
local function error_json(id, e, key)
  local doc = to_json({ [key or "job_id"] = id,
                        error = { kind = e.kind, code = e.code, message = e.message, status = e.status } })
  if type(e.job) == "table" and (key or "job_id") == "job_id" then
    doc = doc:sub(1, -2) .. ',"job":' .. answer_json(e.job) .. "}"
  end
  return doc
end

local FIELDS = { "status", "mode", "checkpoint", "progress_pct", "cdn_url", "mask_cdn_url",
                 "error_code", "error_message", "created_at", "completed_at" }

-- A job (or, with key and fields, an asset): its id, then a line per field it has.
local function print_job(job, key, fields)
  stdout:write(tostring(job[key or "job_id"] or "?"), "\n")
  for _, k in ipairs(fields or FIELDS) do
    local v = job[k]
    if v ~= nil then
      if k == "progress_pct" then v = format("%g%%", v) end
      stdout:write(format("  %-13s %s\n", k .. ":", tostring(v)))
    end
  end
end

local function elapsed(s)
  s = floor(s)
  if s >= 3600 then return format("%d:%02d:%02d", floor(s / 3600), floor(s / 60) % 60, s % 60) end
  return format("%d:%02d", floor(s / 60), s % 60)
end

local function bar(pct, width)
  local filled = floor(width * min(max(pct or 0, 0), 100) / 100 + 0.5)
  return "[" .. ("#"):rep(filled) .. ("."):rep(width - filled) .. "]"
end

local function job_line(id, job, err, t)
  local st = job and job.status or "waiting"
  if err then
    st = FAILED[err.kind] and "failed" or err.kind == "job_cancelled" and "cancelled" or err.kind
  end
  local pct = job and (job.progress_pct or (DONE[job.status] and 100)) or 0
  local line = format("%-20s %-10s %-12s %s %3d%%  %s", id, st, job and job.checkpoint or "", bar(pct, 20),
                      floor(pct), elapsed(t))
  if err and err.kind ~= "job_cancelled" then line = line .. "  " .. (err.code or err.message or "") end
  return line
end

-- Live or plain progress for a set of jobs.
local function progress_view(ids)
  local tty = core.isatty(2)
  local out = stderr
  local start = core.now()
  local state, drawn = {}, false
  local view = {}
  local function draw()
    if not tty then return end
    if drawn then out:write(format("\27[%dA", #ids)) end
    for _, id in ipairs(ids) do
      local s = state[id] or {}
      out:write("\r\27[2K", job_line(id, s.job, s.err, (s.t or core.now()) - start), "\n")
    end
    drawn = true
    out:flush()
  end
  function view.update(id, job, err)
    local s = state[id] or {}
    state[id] = s
    s.job, s.err = job or s.job, err
    if err or (job and (viggle.TERMINAL[job.status] or DONE[job.status])) then s.t = core.now() end
    if tty then draw() return end
    local key = job_line(id, s.job, err, 0)
    if key ~= s.printed and job and not err then -- plain output: a line per change (an error is said once, apart)
      s.printed = key
      out:write(job_line(id, s.job, err, core.now() - start), "\n")
      out:flush()
    end
  end
  return view
end

local verbose -- --verbose: each request and each retry on stderr

local function client_or_fail()
  local c, err = viggle.new({ on_request = verbose and function(r)
    stderr:write(format("viggle: %s %s -> %s (%.0f ms)\n", r.method, r.url,
      r.status and tostring(r.status) or tostring(r.error), r.seconds * 1000))
  end or nil })
  if not c then return nil, fail(err) end
  current = c
  return c
end

local function on_retry(err, delay)
  if verbose then stderr:write(format("viggle: retry in %.1f s after: %s\n", delay, tostring(err))) end
end

-- The job ids of a command: its arguments, where "-" reads ids from stdin,
-- one a line (blank lines skipped).
local function job_ids(pos)
  local ids = {}
  for _, a in ipairs(pos) do
    if a == "-" then
      for line in io.stdin:lines() do
        local id = line:match("^%s*(.-)%s*$")
        if id ~= "" then ids[#ids + 1] = id end
      end
    else
      ids[#ids + 1] = a
    end
  end
  return ids
end

local commands = {}

-- status and cancel: one call per id, in order; the worst exit code.
local function each_id(cmd, opts, pos, show)
  if #pos == 0 then return usage_error(cmd .. " needs at least one JOB_ID (or - to read them from stdin)", cmd) end
  local c, code = client_or_fail()
  if not c then return code end
  code = EXIT.ok
  for _, id in ipairs(job_ids(pos)) do
    local r, err = c[cmd](c, id)
    if not r then
      code = worst(code, EXIT.error)
      stderr:write(tostring(err), "\n")
      if opts.json then stdout:write(error_json(id, err), "\n") end
    elseif opts.json then
      stdout:write(answer_json(r), "\n")
    else
      show(id, r)
    end
    stdout:flush()
  end
  return code
end

function commands.status(opts, pos)
  return each_id("status", opts, pos, function(_, job) print_job(job) end)
end

-- Follows jobs (or, with `key` "character_id"/"scene_id", assets) with the
-- progress display (stderr); the exit code and the results.
local function wait_jobs(c, ids, opts, key)
  key = key or "job_id"
  local view = progress_view(ids)
  for _, id in ipairs(ids) do view.update(id, nil, nil) end
  local items = ids
  if key then
    items = {}
    for i, id in ipairs(ids) do items[i] = { [key] = id } end
  end
  key = key or "job_id"
  local results = c:await_all(items, {
    interval = opts.interval, timeout = opts.timeout, rate = opts.rate,
    cancel_on_timeout = opts["cancel-on-timeout"], on_retry = on_retry,
    on_progress = function(job) view.update(job[key], job) end,
  })
  local code = EXIT.ok
  for i, id in ipairs(ids) do
    local r = results[i]
    code = worst(code, exit_code(r))
    if viggle.is_error(r) then view.update(id, r.job, r) else view.update(id, r) end
  end
  for i, id in ipairs(ids) do
    local r = results[i]
    if viggle.is_error(r) then stderr:write(tostring(r), "\n") end
    if opts.json then
      -- a job: the API's own text; an asset: its table (the client names its id field)
      local doc = key == "job_id" and answer_json or to_json
      stdout:write(viggle.is_error(r) and error_json(id, r, key) or doc(r), "\n")
    elseif not viggle.is_error(r) and r.cdn_url then
      if #ids == 1 then stdout:write("video: ", r.cdn_url, "\n") else stdout:write(id, " ", r.cdn_url, "\n") end
    end
  end
  return code, results
end

function commands.wait(opts, pos)
  if #pos == 0 then return usage_error("wait needs at least one JOB_ID (or - to read them from stdin)", "wait") end
  local c, code = client_or_fail()
  if not c then return code end
  local ids = job_ids(pos)
  if #ids == 0 then return usage_error("wait: no JOB_ID on stdin", "wait") end
  return (wait_jobs(c, ids, opts))
end

local function human_bytes(n)
  if n >= 1073741824 then return format("%.2f GiB", n / 1073741824) end
  if n >= 1048576 then return format("%.1f MiB", n / 1048576) end
  if n >= 1024 then return format("%.1f KiB", n / 1024) end
  return format("%d B", n)
end

local function download_bar()
  local tty = core.isatty(2)
  local start, last_print = core.now(), 0
  return function(bytes, total)
    local t = core.now()
    local rate = bytes / max(t - start, 1e-3)
    local line
    if total and total > 0 then
      local left = rate > 0 and (total - bytes) / rate or 0
      line = format("%s %3d%%  %s of %s  %s/s  %s left", bar(bytes / total * 100, 24), floor(bytes / total * 100),
                    human_bytes(bytes), human_bytes(total), human_bytes(rate), elapsed(left))
    else
      line = format("%s  %s/s", human_bytes(bytes), human_bytes(rate))
    end
    if tty then
      stderr:write("\r\27[2K", line)
      if total and bytes >= total then stderr:write("\n") end
    elseif t - last_print >= 1 or (total and bytes >= total) then
      stderr:write(line, "\n")
      last_print = t
    end
  end
end

-- True when path is a directory ("path/." opens only for a directory).
local function is_dir(path)
  local f = io.open(path .. "/.", "rb")
  if f then f:close() end
  return f ~= nil
end

-- Where a download goes: -o FILE, or -o DIR (DIR/<job_id>.mp4), or by default
-- <job_id>.mp4 (the URL's file name for a URL) in the current directory.
local function output_path(target, opts)
  local name
  if type(target) == "table" then target = target.job_id end
  if target:find("://", 1, true) then
    name = target:match("^[^?#]*/([^/?#]+)") or "video.mp4"
  else
    name = target .. (opts.mask and "-mask" or "") .. ".mp4"
  end
  local out = opts.output
  if not out then return name end
  if is_dir(out) then return (out:gsub("/+$", "")) .. "/" .. name end
  return out
end

local function download(c, target, opts)
  local path, info = c:download(target, output_path(target, opts), { mask = opts.mask, overwrite = opts.overwrite,
                                                                    on_progress = download_bar() })
  if not path then return fail(info) end
  -- with --json stdout holds only JSON: the line is for people
  ;(opts.json and stderr or stdout):write("saved ", path, " (", human_bytes(info.bytes), ")\n")
  return EXIT.ok
end

function commands.download(opts, pos)
  if #pos ~= 1 then return usage_error("download takes one JOB_ID or URL", "download") end
  local c, code = client_or_fail()
  if not c then return code end
  return download(c, pos[1], opts)
end

function commands.cancel(opts, pos)
  return each_id("cancel", opts, pos, function(id) stdout:write("cancelled ", id, "\n") end)
end

function commands.credits(opts, pos)
  if #pos ~= 0 then return usage_error("credits takes no arguments", "credits") end
  local c, code = client_or_fail()
  if not c then return code end
  local res, err = c:credits()
  if not res then return fail(err) end
  if opts.json then stdout:write(answer_json(res), "\n") return EXIT.ok end
  stdout:write(format("balance: %s credits (purchased %s, used %s)\n", tostring(res.balance),
                      tostring(res.total_purchased), tostring(res.total_used)))
  return EXIT.ok
end

function commands.render(opts, pos)
  if #pos ~= 0 then return usage_error("render takes options only, got " .. pos[1], "render") end
  if opts.output and not opts.wait then return usage_error("-o needs --wait", "render") end
  local c, code = client_or_fail()
  if not c then return code end
  local params = {
    ref_image = opts.image, ref_image_url = opts["image-url"], driving_video = opts.video,
    driving_video_url = opts["video-url"], character_id = opts.character, scene_id = opts.scene,
    character_mapping = opts.mapping, model = opts.model, background_mode = opts.background,
    bg_color = opts["bg-color"], fast = opts.fast or nil,
  }
  if opts.wait then -- a bad --interval is refused before a job (and its credits) exists
    require("viggle.http").check_opts({ interval = opts.interval, timeout = opts.timeout }, "await", c)
  end
  if opts.output then -- what would fail only after paying fails now
    local perr = require("viggle.preflight").check(c, params, opts.output, { overwrite = opts.overwrite })
    if perr then return fail(perr) end
  end
  local job, err = c:render(params, { on_retry = on_retry })
  if not job then return fail(err) end
  if not opts.wait then
    if opts.json then stdout:write(answer_json(job), "\n") else stdout:write(job.job_id, "\n") end
    return EXIT.ok
  end
  stderr:write("started ", job.job_id, "\n")
  _M.rendering = { client = c, job_id = job.job_id, cancel = opts["cancel-on-interrupt"] }
  local wcode, results = wait_jobs(c, { job.job_id }, opts)
  _M.rendering = nil
  if wcode ~= EXIT.ok or not opts.output then return wcode end
  return (download(c, results[1], opts))
end

-- Ctrl-C during render --wait: the job goes on at the API. Say how to follow
-- or cancel it, or (--cancel-on-interrupt) cancel it.
local function interrupted_render(r)
  if r.cancel then
    local ok, err = r.client:cancel(r.job_id)
    if ok then
      stderr:write("viggle: cancelled ", r.job_id, " (its credits are refunded)\n")
    else
      stderr:write("viggle: could not cancel ", r.job_id, ": ", tostring(err), "\n",
                   "  viggle cancel ", r.job_id, "    # try again\n")
    end
    return
  end
  stderr:write("viggle: job ", r.job_id, " is still running at the API:\n",
               "  viggle wait ", r.job_id, "      # follow it\n",
               "  viggle cancel ", r.job_id, "    # cancel it (its credits are refunded)\n")
end

function commands.batch(opts, pos)
  return require("viggle.cli_batch").main(opts, pos, { EXIT = EXIT, fail = fail, usage_error = usage_error })
end

-- What viggle.cli_assets shares with the commands here.
_M.usage_error, _M.fail, _M.to_json, _M.client_or_fail = usage_error, fail, to_json, client_or_fail
_M.wait_jobs, _M.print_job = wait_jobs, print_job

--- Runs the CLI with `args` (a Lua `arg` table); returns the exit code.
function _M.main(args)
  local cmd = args[1]
  if cmd == nil or cmd == "-h" or cmd == "--help" then
    stdout:write(help().usage)
    return cmd and EXIT.ok or EXIT.usage
  end
  if cmd == "--version" or cmd == "version" then
    stdout:write(format("viggle %s (libcurl %s, %s, %s)\n", viggle.VERSION, core.curl_version, core.ssl_version,
      type(jit) == "table" and jit.version or _VERSION))
    return EXIT.ok
  end
  if cmd == "help" then
    local topic = args[2]
    local h = help()
    stdout:write(topic and h.commands[topic] or h.usage)
    return (topic == nil or h.commands[topic]) and EXIT.ok or EXIT.usage
  end
  local run, spec = commands[cmd], OPTIONS[cmd]
  if cmd == "characters" or cmd == "scenes" then -- their subcommands live in viggle.cli_assets
    local assets = require("viggle.cli_assets")
    run, spec = function(o, p) return assets.run(_M, cmd, o, p) end, assets.OPTIONS[cmd]
  end
  if not run then return usage_error("unknown command '" .. tostring(cmd) .. "'") end
  local opts, pos = parse(spec, args, 2)
  if not opts then return usage_error(pos, cmd) end
  if opts.help then
    stdout:write(help().commands[cmd])
    return EXIT.ok
  end
  verbose = opts.verbose
  local ok, code = pcall(run, opts, pos)
  if ok then return code end
  if tostring(code):find("interrupted", 1, true) then
    stderr:write("\nviggle: interrupted\n")
    local r = _M.rendering
    _M.rendering = nil
    if r then pcall(interrupted_render, r) end
    return EXIT.interrupted
  end
  local msg = tostring(code):gsub("^[^\n]-:%d+: ", "")
  if msg:find("^unknown option '") or msg:find("^bad option '") then -- the library refused an option value
    return usage_error(msg, cmd)
  end
  stderr:write("viggle: internal error: ", tostring(code), "\n")
  return EXIT.error
end

return _M
