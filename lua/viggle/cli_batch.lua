--- `viggle batch MANIFEST` and `viggle batch status MANIFEST`: the CLI side
--- of viggle.batch, loaded only for these commands.
local core = require("viggle.core")
local cjson = require("cjson.safe")

local format, floor, concat = string.format, math.floor, table.concat
local stdout, stderr = io.stdout, io.stderr

local _M = {}

local function to_json(t)
  return (cjson.encode(t) or "{}"):gsub("\\/", "/")
end

local function item_json(it)
  return to_json({ key = it.key, state = it.state, job_id = it.job_id, code = it.code, message = it.message,
                   output = it.output, credits = it.credits, exact = it.exact, posts = it.posts,
                   was_uncertain = it.was_uncertain })
end

local function shown_state(s)
  if s.state == "submitted" and s.job then
    local pct = s.job.progress_pct
    return s.job.status .. (pct and format(" %d%%", floor(pct)) or "")
  end
  return s.state or "planned"
end

local function line(key, s)
  return format("%-20s %-16s %-22s %s", key, shown_state(s), s.job_id or "", s.message or s.output or "")
end

-- What the batch will cost, against the balance (a "cost" event).
local function cost_line(ev)
  local msg = format("estimate: %d credits for %d items to submit", ev.credits, ev.items)
  if ev.unknown > 0 then msg = msg .. format(" (+ %d of unknown cost: remote videos)", ev.unknown) end
  if ev.balance then msg = msg .. format("; balance %s credits", tostring(ev.balance))
  else msg = msg .. "; balance unknown (" .. tostring(ev.error) .. ")" end
  if ev.max_credits then msg = msg .. format("; limit %s", tostring(ev.max_credits)) end
  if ev.balance and ev.credits > ev.balance then msg = msg .. "  -- MORE THAN THE BALANCE" end
  return msg
end

-- The view of a running batch: a live table on a terminal, a line per
-- change otherwise, or (json) a JSON line per item as it ends.
local function view(json)
  local tty = not json and core.isatty(1)
  local order, state, printed = {}, {}, {}
  local drawn, last_draw = 0, 0
  local v = {}
  local width = (tonumber(os.getenv("COLUMNS")) or 100) - 1
  local rows = math.max((tonumber(os.getenv("LINES")) or 24) - 4, 5)
  -- Every item when they fit the screen; else a count per state and the
  -- items in flight (a line that wraps or scrolls away would break the redraw).
  local function draw(force)
    local t = core.now()
    if not force and t - last_draw < 0.1 then return end
    last_draw = t
    local lines = {}
    if #order <= rows then
      for _, key in ipairs(order) do lines[#lines + 1] = line(key, state[key]) end
    else
      local counts, names = {}, {}
      for _, key in ipairs(order) do
        local st = state[key].state or "planned"
        if not counts[st] then names[#names + 1] = st end
        counts[st] = (counts[st] or 0) + 1
        if (st == "submitting" or st == "submitted" or st == "complete") and #lines < rows - 1 then
          lines[#lines + 1] = line(key, state[key])
        end
      end
      for i, st in ipairs(names) do names[i] = counts[st] .. " " .. st end
      table.insert(lines, 1, format("%d items: %s", #order, concat(names, ", ")))
    end
    if drawn > 0 then stdout:write(format("\27[%dA", drawn)) end
    for _, l in ipairs(lines) do stdout:write("\r\27[2K", l:sub(1, width), "\n") end
    for _ = #lines + 1, drawn do stdout:write("\r\27[2K\n") end
    drawn = math.max(drawn, #lines)
    stdout:flush()
  end
  function v.event(ev)
    if ev.type == "cost" then
      stderr:write(cost_line(ev), "\n")
      return
    elseif ev.type == "notice" then
      stderr:write("viggle: ", ev.message, "\n")
      return
    end
    local s = state[ev.key]
    if not s then
      s = {}
      state[ev.key] = s
      order[#order + 1] = ev.key
    end
    s.state, s.job_id, s.output = ev.state, ev.job_id or s.job_id, ev.output
    s.job = ev.job
    if not ev.job then s.message = ev.message end
    if json then return end
    if tty then return draw(ev.state ~= "submitted") end
    local text = line(ev.key, s)
    if text ~= printed[ev.key] then
      printed[ev.key] = text
      stdout:write(text, "\n")
      stdout:flush()
    end
  end
  function v.finish(report)
    if tty then
      for _, it in ipairs(report.items) do
        local s = state[it.key] or {}
        state[it.key] = s
        if not s.state then order[#order + 1] = it.key end
        s.state, s.job_id, s.message, s.job = it.state, it.job_id, it.message, nil
      end
      draw(true)
    end
    if json then
      for _, it in ipairs(report.items) do stdout:write(item_json(it), "\n") end
    end
  end
  return v
end

local function summary(report)
  local parts = {}
  for _, s in ipairs(require("viggle.journal").STATES) do
    local n = report.counts[s] or 0
    if n > 0 then parts[#parts + 1] = n .. " " .. s end
  end
  stderr:write(format("batch: %d items: %s (journal %s)\n", #report.items, concat(parts, ", "), report.journal))
  local now, again = {}, {}
  for _, it in ipairs(report.items) do
    if it.state == "uncertain" then now[#now + 1] = it.key elseif it.was_uncertain then again[#again + 1] = it.key end
  end
  if #now > 0 then
    stderr:write("uncertain (their POST may have reached the server without an answer; not sent again",
      " without --resubmit-uncertain, which may pay twice): ", concat(now, ", "), "\n")
  end
  if #again > 0 then
    stderr:write("sent again after being uncertain (the first job may exist and be paid for too): ",
      concat(again, ", "), "\n")
  end
  if report.stopped then stderr:write("stopped submitting: the API answered 402 (not enough credits)\n") end
  for _, it in ipairs(report.items) do
    if it.state ~= "downloaded" and it.message then stderr:write(it.key, ": ", it.message, "\n") end
  end
end

local function status(opts, pos, env)
  if #pos ~= 2 then return env.usage_error("batch status takes one MANIFEST", "batch") end
  local st, err = require("viggle.batch").status(pos[2], { journal = opts.journal, redis = opts.redis,
                                                           name = opts.name })
  if not st then return env.fail(err) end
  if opts.json then
    stdout:write(to_json({ journal = st.journal, counts = st.counts, items = st.items, workers = st.workers }), "\n")
    return env.EXIT.ok
  end
  local parts = {}
  for _, s in ipairs(require("viggle.journal").STATES) do parts[#parts + 1] = format("%s %d", s, st.counts[s] or 0) end
  stdout:write(format("journal %s: %d items\n%s\n", st.journal, #st.items, concat(parts, ", ")))
  for _, it in ipairs(st.items) do
    local held = st.workers and format("%-24s ", it.holder and format("%s (%.0fs)", it.holder, it.lease_left) or "-") or ""
    stdout:write(format("%-20s %-11s %s%-22s %s%s\n", it.key, it.state, held, it.job_id or "-", it.output or "",
      it.message and ("  (" .. it.message .. ")") or ""))
  end
  for _, w in ipairs(st.workers or {}) do
    stdout:write(format("worker %s: last seen %.1fs ago\n", w.worker, w.seen_ago))
  end
  return env.EXIT.ok
end

--- Runs `viggle batch ...` with the parsed options and positionals; `env`
--- carries the CLI's EXIT codes, fail and usage_error.
---@param opts table
---@param pos string[]
---@param env table
---@return integer exit_code
function _M.main(opts, pos, env)
  if pos[1] == "status" then return status(opts, pos, env) end
  if #pos ~= 1 then return env.usage_error("batch takes one MANIFEST (or: batch status MANIFEST)", "batch") end
  local c, err = require("viggle").new()
  if not c then return env.fail(err) end
  local v = view(opts.json)
  local report
  report, err = require("viggle.batch").run(pos[1], {
    client = c, journal = opts.journal, concurrency = opts.concurrency, max_credits = opts["max-credits"],
    allow_unknown_cost = opts["allow-unknown-cost"], resubmit_uncertain = opts["resubmit-uncertain"],
    interval = opts.interval, timeout = opts.timeout, on_event = v.event,
    redis = opts.redis, name = opts.name, lease = opts.lease, claims_log = opts["claims-log"],
  })
  if not report then return env.fail(err) end
  v.finish(report)
  summary(report)
  if report.ok then return env.EXIT.ok end
  local n = report.counts
  if n.failed > 0 then return env.EXIT.failed end
  if n.cancelled > 0 then return env.EXIT.cancelled end
  if n.submitted > 0 and n.planned + n.uncertain + n.complete == 0 then return env.EXIT.timeout end
  return env.EXIT.error
end

return _M
