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
             ["cancel-on-timeout"] = false, json = false },
  cancel = { json = false },
  download = { output = "string", mask = false, overwrite = false },
  credits = { json = false },
  batch = { journal = "string", concurrency = "number", ["max-credits"] = "number", interval = "number",
            timeout = "number", ["resubmit-uncertain"] = false, ["allow-unknown-cost"] = false, json = false },
}
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

local function fail(err)
  stderr:write(tostring(err), "\n")
  if viggle.is_error(err) then
    if FAILED[err.kind] then return EXIT.failed end
    if err.kind == "job_cancelled" then return EXIT.cancelled end
    if err.kind == "timeout" and err.job then return EXIT.timeout end
  end
  return EXIT.error
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
  local tty = core.isatty(1)
  local start = core.now()
  local state, drawn = {}, false
  local view = {}
  local function draw()
    if not tty then return end
    if drawn then stdout:write(format("\27[%dA", #ids)) end
    for _, id in ipairs(ids) do
      local s = state[id] or {}
      stdout:write("\r\27[2K", job_line(id, s.job, s.err, (s.t or core.now()) - start), "\n")
    end
    drawn = true
    stdout:flush()
  end
  function view.update(id, job, err)
    local s = state[id] or {}
    state[id] = s
    s.job, s.err = job or s.job, err
    if err or (job and (viggle.TERMINAL[job.status] or DONE[job.status])) then s.t = core.now() end
    if tty then draw() return end
    local key = job_line(id, s.job, err, 0)
    if key ~= s.printed and (job or err) then -- plain output: a line per change
      s.printed = key
      stdout:write(job_line(id, s.job, err, core.now() - start), "\n")
      stdout:flush()
    end
  end
  return view
end

local function client_or_fail()
  local c, err = viggle.new()
  if not c then return nil, fail(err) end
  current = c
  return c
end

local commands = {}

function commands.status(opts, pos)
  if #pos ~= 1 then return usage_error("status takes one JOB_ID", "status") end
  local c, code = client_or_fail()
  if not c then return code end
  local job, err = c:status(pos[1])
  if not job then return fail(err) end
  if opts.json then stdout:write(to_json(job), "\n") else print_job(job) end
  return EXIT.ok
end

-- Follows jobs (or, with `key` "character_id"/"scene_id", assets) with the
-- progress display; the exit code and the results.
local function wait_jobs(c, ids, opts, key)
  local view = opts.json and { update = function() end } or progress_view(ids)
  for _, id in ipairs(ids) do view.update(id, nil, nil) end
  local items = ids
  if key then
    items = {}
    for i, id in ipairs(ids) do items[i] = { [key] = id } end
  end
  key = key or "job_id"
  local results = c:await_all(items, {
    interval = opts.interval, timeout = opts.timeout, rate = opts.rate,
    cancel_on_timeout = opts["cancel-on-timeout"],
    on_progress = function(job) view.update(job[key], job) end,
  })
  local code = EXIT.ok
  for i, id in ipairs(ids) do
    local r = results[i]
    if viggle.is_error(r) then
      view.update(id, r.job, r)
      local this = FAILED[r.kind] and EXIT.failed or r.kind == "job_cancelled" and EXIT.cancelled
                   or r.kind == "timeout" and EXIT.timeout or EXIT.error
      if code == EXIT.ok or this == EXIT.error then code = this end
    else
      view.update(id, r)
    end
  end
  for i, id in ipairs(ids) do
    local r = results[i]
    if opts.json then
      stdout:write(to_json(viggle.is_error(r) and { [key] = id, error = { kind = r.kind, code = r.code,
        message = r.message, status = r.status } } or r), "\n")
    elseif viggle.is_error(r) then
      stderr:write(tostring(r), "\n")
    elseif r.cdn_url and #ids == 1 then
      stdout:write("video: ", r.cdn_url, "\n")
    end
  end
  return code, results
end

function commands.wait(opts, pos)
  if #pos == 0 then return usage_error("wait needs at least one JOB_ID", "wait") end
  local c, code = client_or_fail()
  if not c then return code end
  return (wait_jobs(c, pos, opts))
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

local function download(c, target, out, opts)
  local path, info = c:download(target, out, { mask = opts.mask, overwrite = opts.overwrite,
                                                on_progress = download_bar() })
  if not path then return fail(info) end
  stdout:write("saved ", path, " (", human_bytes(info.bytes), ")\n")
  return EXIT.ok
end

function commands.download(opts, pos)
  if #pos ~= 1 then return usage_error("download takes one JOB_ID or URL", "download") end
  local c, code = client_or_fail()
  if not c then return code end
  local target = pos[1]
  local out = opts.output
  if not out then
    if target:find("://", 1, true) then
      out = target:match("^[^?#]*/([^/?#]+)") or "video.mp4"
    else
      out = target .. (opts.mask and "-mask" or "") .. ".mp4"
    end
  end
  return download(c, target, out, opts)
end

function commands.cancel(opts, pos)
  if #pos ~= 1 then return usage_error("cancel takes one JOB_ID", "cancel") end
  local c, code = client_or_fail()
  if not c then return code end
  local res, err = c:cancel(pos[1])
  if not res then return fail(err) end
  if opts.json then stdout:write(to_json(res), "\n") else stdout:write("cancelled ", pos[1], "\n") end
  return EXIT.ok
end

function commands.credits(opts, pos)
  if #pos ~= 0 then return usage_error("credits takes no arguments", "credits") end
  local c, code = client_or_fail()
  if not c then return code end
  local res, err = c:credits()
  if not res then return fail(err) end
  if opts.json then stdout:write(to_json(res), "\n") return EXIT.ok end
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
  if opts.output then -- what would fail only after paying fails now
    local perr = require("viggle.preflight").check(c, params, opts.output, { overwrite = opts.overwrite })
    if perr then return fail(perr) end
  end
  local job, err = c:render(params)
  if not job then return fail(err) end
  if not opts.wait then
    if opts.json then stdout:write(to_json(job), "\n") else stdout:write(job.job_id, "\n") end
    return EXIT.ok
  end
  if not opts.json then stdout:write("started ", job.job_id, "\n") end
  local wcode, results = wait_jobs(c, { job.job_id }, opts)
  if wcode ~= EXIT.ok or not opts.output then return wcode end
  return (download(c, results[1], opts.output, opts))
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
    stdout:write(format("viggle %s (libcurl %s, %s, %s)\n", viggle.VERSION, core.curl_version, core.ssl_version, _VERSION))
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
  local ok, code = pcall(run, opts, pos)
  if ok then return code end
  if tostring(code):find("interrupted", 1, true) then
    stdout:write("\n")
    stderr:write("viggle: interrupted\n")
    return EXIT.interrupted
  end
  stderr:write("viggle: internal error: ", tostring(code), "\n")
  return EXIT.error
end

return _M
