-- Mutation testing for viggle: plants the single-line bugs listed in
-- tools/mutants.txt one at a time in a scratch copy of the repo, runs the
-- fast suite (busted on Lua 5.4) against each, and prints each verdict and
-- the score. Run from anywhere with a Lua 5.x interpreter:
--
--   lua5.4 tools/mutate.lua              run every mutant (make mutate)
--   lua5.4 tools/mutate.lua --check      every mutant still applies (CI)
--   lua5.4 tools/mutate.lua --relocate   find mutants whose line moved; rewrite the list
--   lua5.4 tools/mutate.lua --list       the mutants, one line each
--
-- Environment (run mode):
--   JOBS=2              mutants run side by side (each in its own scratch copy)
--   MUTATE_SPECS="..."  spec files to run, in Lua 5.4; "jit:FILE" runs FILE in LuaJIT
--                       (against build/jit, never rebuilt: skipped for a mutant in C).
--                       Default: every spec/*_spec.lua but spec/mock_spec.lua (it
--                       tests the mock, not the library), jit:spec/hosts/nvim_spec.lua
--                       (2 s), and last jit:spec/hosts/nginx_spec.lua (15 s: the nginx
--                       glue, lua/viggle/ngx.lua, is only run there).
--   MUTATE_ONLY=A,B     only the mutants whose id or file holds one of these
--                       texts (or matches it, when it has pattern characters)
--   MUTATE_FILTER_OUT=  tests to leave out: comma-separated Lua patterns on their
--                       names, no spaces (busted splits them; write %s). Default:
--                       "never%sstalls,see%sa%sstall,never%swaits%s100%sms,/ping,their%swaits%syield", the
--                       host-loop latency tests of nvim_spec, uv_spec and nginx_spec:
--                       with two mutants at once they measure the machine's load as
--                       much as the code (every other test of those files runs).
--   MUTATE_BASELINE=0   skip the first run of the unmutated suite (which must pass)
--   MUTATE_TIMEOUT=120  seconds one spec file may take before the mutant counts
--                       as killed (timeout)
--   MUTATE_MIN=90       exit 1 when fewer than this percent are killed
--   MUTATE_LIST=FILE    another list (default tools/mutants.txt)
--
-- The list: blocks of "key: value" lines separated by blank lines; '#' starts
-- a comment line. Keys: id, file, line, from (the exact text replaced, found
-- once on that line), to (its replacement), sees (what a user would see), and
-- equivalent (why no test can tell the mutant apart: only for a survivor that
-- is argued equivalent), specs (the spec files that kill it, tried first: only
-- an order, the others run when they do not). Values run to the end of the
-- line; trailing blanks are dropped.
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated

local function die(msg)
  io.stderr:write("mutate: ", msg, "\n")
  os.exit(2)
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  assert(f:close())
end

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a") or ""
  p:close()
  return s
end

-- os.execute's answer as a number on 5.1 (a number) and 5.2+ (ok, how, code)
local function run(cmd)
  local a, how, code = os.execute(cmd)
  if type(a) == "number" then return a >= 256 and a / 256 or a end
  if a == true then return 0 end
  if how == "signal" then return 128 + (code or 0) end
  return code or 1
end

local function now()
  local s = capture("date +%s.%N")
  return tonumber(s) or os.time()
end

-- lines of a text (keeps a last line without a newline)
local function split_lines(s)
  local out = {}
  for line in (s .. (s:sub(-1) == "\n" and "" or "\n")):gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- how many times plain text `needle` occurs in `s` (non-overlapping)
local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function dirname(p) return p:match("^(.*)/[^/]*$") or "." end

-- the repo root: the parent of this script's directory
local script = arg and arg[0] or "tools/mutate.lua"
local ROOT = capture("cd " .. q(dirname(script) .. "/..") .. " && pwd"):gsub("%s+$", "")
local LIST = os.getenv("MUTATE_LIST") or (ROOT .. "/tools/mutants.txt")
local INTERP = os.getenv("MUTATE_LUA") or "lua5.4"

-- ---- the list ---------------------------------------------------------------

local KEYS = { id = true, file = true, line = true, from = true, to = true, sees = true, equivalent = true,
               specs = true }

-- Parses the list: mutants (with .where[key] = line number in the list file)
-- and the list's lines (to rewrite it in place).
local function load_list(path)
  local text = read_file(path)
  if not text then die("cannot read " .. path) end
  local lines = split_lines(text)
  local mutants, cur = {}, nil
  local function close()
    if not cur then return end
    for _, k in ipairs({ "file", "line", "from", "to", "sees" }) do
      if cur[k] == nil then die(string.format("%s:%d: mutant without '%s'", path, cur.at, k)) end
    end
    cur.line = tonumber(cur.line) or die(string.format("%s:%d: line is not a number", path, cur.at))
    if cur.from == "" then die(string.format("%s:%d: empty 'from'", path, cur.at)) end
    cur.id = cur.id or (cur.file:match("[^/]+$") .. ":" .. cur.line)
    mutants[#mutants + 1] = cur
    cur = nil
  end
  for i, line in ipairs(lines) do
    if line:match("^%s*$") then
      close()
    elseif not line:match("^%s*#") then
      local k, v = line:match("^(%w+):%s?(.*)$")
      if not k or not KEYS[k] then die(string.format("%s:%d: expected 'key: value', got %q", path, i, line)) end
      cur = cur or { at = i, where = {} }
      if cur[k] ~= nil then die(string.format("%s:%d: '%s' given twice", path, i, k)) end
      cur[k] = v:gsub("%s+$", "")
      cur.where[k] = i
    end
  end
  close()
  local seen = {}
  for _, m in ipairs(mutants) do
    if seen[m.id] then die("two mutants have the id " .. m.id) end
    seen[m.id] = true
  end
  return mutants, lines
end

-- The file's lines, cached per run of --check/--relocate.
local file_cache = {}
local function file_lines(rel)
  if file_cache[rel] == nil then
    local s = read_file(ROOT .. "/" .. rel)
    file_cache[rel] = s and split_lines(s) or false
  end
  return file_cache[rel] or nil
end

-- nil when the mutant applies, else why not
local function check_one(m)
  local lines = file_lines(m.file)
  if not lines then return "no such file" end
  local l = lines[m.line]
  if not l then return "the file has only " .. #lines .. " lines" end
  local n = count(l, m.from)
  if n == 0 then return "text not found on line " .. m.line end
  if n > 1 then return "text found " .. n .. " times on line " .. m.line end
  if m.from == m.to then return "from and to are the same" end
  return nil
end

-- ---- --check ----------------------------------------------------------------

local function cmd_check()
  local mutants = load_list(LIST)
  local bad = 0
  for _, m in ipairs(mutants) do
    local why = check_one(m)
    if why then
      bad = bad + 1
      io.stdout:write(string.format("does not apply: %s (%s:%d): %s\n", m.id, m.file, m.line, why))
    end
  end
  io.stdout:write(string.format("%d mutants, %d apply, %d do not%s\n", #mutants, #mutants - bad, bad,
    bad > 0 and " (run tools/mutate.lua --relocate after moving code)" or ""))
  os.exit(bad == 0 and 0 or 1)
end

-- ---- --relocate -------------------------------------------------------------

-- The files a mutant's code may have moved to: same directory, same kind.
local function siblings(rel)
  local dir = dirname(rel)
  local pattern = rel:match("%.lua$") and "%.lua$" or "%.[ch]$"
  local out = {}
  for name in capture("ls " .. q(ROOT .. "/" .. dir) .. " 2>/dev/null"):gmatch("[^\n]+") do
    if name:match(pattern) and dir .. "/" .. name ~= rel then out[#out + 1] = dir .. "/" .. name end
  end
  table.sort(out)
  return out
end

-- lines of `rel` holding the text exactly once
local function candidates(rel, text)
  local out = {}
  for i, l in ipairs(file_lines(rel) or {}) do
    if count(l, text) == 1 then out[#out + 1] = i end
  end
  return out
end

-- new file, line for a mutant that no longer applies, or nil, why
local function relocate_one(m)
  local same = candidates(m.file, m.from)
  if #same == 1 then return m.file, same[1] end
  if #same > 1 then
    table.sort(same, function(a, b) return math.abs(a - m.line) < math.abs(b - m.line) end)
    if math.abs(same[1] - m.line) < math.abs(same[2] - m.line) then
      return m.file, same[1], string.format(" (the nearest of %d places: check it)", #same)
    end
    return nil, string.format("%d places in %s, none nearest to line %d", #same, m.file, m.line)
  end
  local found = {}
  for _, f in ipairs(siblings(m.file)) do
    local c = candidates(f, m.from)
    if #c > 0 then found[#found + 1] = { f, c } end
  end
  if #found == 1 and #found[1][2] == 1 then return found[1][1], found[1][2][1] end
  if #found == 0 then return nil, "text found nowhere in " .. dirname(m.file) end
  local where = {}
  for _, fc in ipairs(found) do where[#where + 1] = fc[1] .. " (" .. #fc[2] .. ")" end
  return nil, "text found in several places: " .. table.concat(where, ", ")
end

local function cmd_relocate()
  local mutants, lines = load_list(LIST)
  local moved, failed = 0, 0
  for _, m in ipairs(mutants) do
    if check_one(m) then
      local file, line, note = relocate_one(m)
      if file then
        moved = moved + 1
        io.stdout:write(string.format("moved: %s %s:%d -> %s:%d%s\n", m.id, m.file, m.line, file, line, note or ""))
        lines[m.where.file] = "file: " .. file
        lines[m.where.line] = "line: " .. line
      else
        failed = failed + 1
        io.stdout:write(string.format("NOT relocated: %s (%s:%d, %q): %s\n", m.id, m.file, m.line, m.from, line))
      end
    end
  end
  if moved > 0 then write_file(LIST, table.concat(lines, "\n") .. "\n") end
  io.stdout:write(string.format("%d mutants: %d relocated, %d could not be%s\n", #mutants, moved, failed,
    moved > 0 and (" (" .. LIST .. " rewritten)") or ""))
  os.exit(failed == 0 and 0 or 1)
end

-- ---- running ----------------------------------------------------------------

local function default_specs()
  local out = {}
  local slow = {}
  -- the slowest last: a mutant most specs kill is then found early
  local SLOW = { ["spec/packaging_spec.lua"] = 1, ["spec/await_spec.lua"] = 2 }
  for f in capture("cd " .. q(ROOT) .. " && ls spec/*_spec.lua"):gmatch("[^\n]+") do
    if SLOW[f] then slow[SLOW[f]] = f
    elseif f ~= "spec/mock_spec.lua" then out[#out + 1] = f end
  end
  out[#out + 1] = "jit:spec/hosts/nvim_spec.lua"
  for i = 1, 2 do out[#out + 1] = slow[i] end
  out[#out + 1] = "jit:spec/hosts/nginx_spec.lua"
  return out
end

-- Spec files in the order to try them for a mutant: the spec named after
-- the mutated module first (heap.lua -> heap_spec.lua), then the rest; the
-- first failing file ends the run.
local function spec_order(specs, file, hint)
  local base = file:match("([^/]+)%.%w+$")
  local first, rest = {}, {}
  for h in (hint or ""):gmatch("%S+") do -- the mutant's own `specs:`, if they are in the run
    for _, s in ipairs(specs) do
      if s == h then first[#first + 1] = s end
    end
  end
  local hinted = " " .. table.concat(first, " ") .. " "
  for _, s in ipairs(specs) do
    if not hinted:find(" " .. s .. " ", 1, true) then
      if s:match("/" .. base:gsub("%p", "%%%0") .. "_spec%.lua$") then first[#first + 1] = s
      else rest[#rest + 1] = s end
    end
  end
  for _, s in ipairs(rest) do first[#first + 1] = s end
  return first
end

-- Kills the nginx mocks a spec run left behind (a timeout or a fail-fast
-- exit skips the teardowns): only those whose pid files are under `tmp`.
local function reap(tmp)
  for pidfile in capture("find " .. q(tmp) .. " -name nginx.pid 2>/dev/null"):gmatch("[^\n]+") do
    local pid = tonumber(read_file(pidfile) or "")
    if pid and (read_file("/proc/" .. pid .. "/cmdline") or ""):find("nginx", 1, true) then
      run("kill -TERM " .. pid .. " 2>/dev/null; sleep 0.2; kill -KILL " .. pid .. " 2>/dev/null")
    end
  end
end

-- Runs one spec file in the scratch copy `dir`; returns verdict, detail
-- (nil, nil when it passes).
local FILTER_OUT = os.getenv("MUTATE_FILTER_OUT") or "never%sstalls,see%sa%sstall,never%swaits%s100%sms,/ping,their%swaits%syield"
local filter_args = ""
for pat in FILTER_OUT:gmatch("[^,]+") do filter_args = filter_args .. " --filter-out=" .. q(pat) end

local function run_spec(dir, entry, timeout)
  local jit, spec = entry:match("^(jit):(.*)$")
  spec = spec or entry
  local tmp, log = dir .. "/.mutate-tmp", dir .. "/.mutate-log"
  run("rm -rf " .. q(tmp) .. " && mkdir -p " .. q(tmp))
  local rc = run(string.format("cd %s && TMPDIR=%s LUA_CPATH='./build/%s/?.so;;' timeout -k 5 %d "
    .. "busted --lua=%s --no-keep-going%s -o TAP %s >%s 2>&1 </dev/null",
    q(dir), q(tmp), jit and "jit" or "5.4", timeout, jit and "luajit" or INTERP, filter_args, q(spec), q(log)))
  reap(tmp)
  run("rm -rf " .. q(tmp))
  if rc == 124 or rc == 137 then return "killed (timeout)", entry end
  if rc ~= 0 then
    local out = read_file(log) or ""
    local test = out:match("\nnot ok %d+ %- ([^\n]*)") or out:match("^not ok %d+ %- ([^\n]*)")
    return "killed", entry .. (test and (": " .. test) or (" (busted exited " .. rc .. ")"))
  end
  return nil, nil
end

-- Runs the spec files in order until one fails; returns verdict, detail.
-- LuaJIT specs run against the clean build/jit, so not for a mutant in C.
local function run_specs(dir, specs, timeout, in_c)
  for _, entry in ipairs(specs) do
    if not (in_c and entry:match("^jit:")) then
      local verdict, detail = run_spec(dir, entry, timeout)
      if verdict then return verdict, detail end
    end
  end
  return "survived", nil
end

local function build(dir)
  return run("cd " .. q(dir) .. " && make -s LUA=5.4 >.mutate-build 2>&1") == 0
end

-- One mutant in the scratch copy `dir`: apply, (rebuild), run, restore.
local function run_mutant(dir, m, specs, timeout)
  local path = dir .. "/" .. m.file
  local original = read_file(path)
  if not original then return "error", "no such file" end
  local lines = split_lines(original)
  local l = lines[m.line]
  if not l or count(l, m.from) ~= 1 then return "error", "does not apply (run --check)" end
  local a = l:find(m.from, 1, true)
  lines[m.line] = l:sub(1, a - 1) .. m.to .. l:sub(a + #m.from)
  write_file(path, table.concat(lines, "\n") .. (original:sub(-1) == "\n" and "\n" or ""))
  local is_c = m.file:match("%.[ch]$") ~= nil
  local verdict, detail
  if is_c and not build(dir) then
    verdict, detail = "error", "does not build: " .. (read_file(dir .. "/.mutate-build") or ""):gsub("\n.*", "")
  else
    verdict, detail = run_specs(dir, spec_order(specs, m.file, m.specs), timeout, is_c)
  end
  write_file(path, original)
  if is_c then run("cp " .. q(dir .. "/.mutate-clean.so") .. " " .. q(dir .. "/build/5.4/viggle/core.so")) end
  return verdict, detail
end

-- A scratch copy of the working tree (tracked and untracked files, not
-- .git or build/), with the module built.
local function make_scratch(base, slot, jit)
  local dir = base .. "/slot" .. slot
  local rc = run(string.format("mkdir -p %s && cd %s && git ls-files -co --exclude-standard -z "
    .. "| xargs -0 tar cf - 2>/dev/null | (cd %s && tar xf -)", q(dir), q(ROOT), q(dir)))
  if rc ~= 0 then die("cannot copy the repo to " .. dir) end
  if not build(dir) then die("the unmutated module does not build:\n" .. (read_file(dir .. "/.mutate-build") or "")) end
  run("cp " .. q(dir .. "/build/5.4/viggle/core.so") .. " " .. q(dir .. "/.mutate-clean.so"))
  if jit and run("cd " .. q(dir) .. " && make -s LUA=jit >.mutate-build 2>&1") ~= 0 then
    die("the module does not build for LuaJIT:\n" .. (read_file(dir .. "/.mutate-build") or ""))
  end
  return dir
end

-- A worker: takes mutants from the shared queue (a mkdir per claim is
-- atomic) until none is left; prints each verdict and writes it to base.
local function cmd_worker(base, slot)
  local mutants = load_list(LIST)
  local specs = {}
  for s in (read_file(base .. "/specs") or ""):gmatch("[^\n]+") do specs[#specs + 1] = s end
  local timeout = tonumber(os.getenv("MUTATE_TIMEOUT")) or 120
  local order = {}
  for n in (read_file(base .. "/order") or ""):gmatch("%d+") do order[#order + 1] = tonumber(n) end
  local dir = base .. "/slot" .. slot
  local skip = order[1] == 0 and 1 or 0
  for k, i in ipairs(order) do
    if run("mkdir " .. q(base .. "/claims/" .. i) .. " 2>/dev/null") == 0 then
      local m = mutants[i]
      local t0 = now()
      local verdict, detail
      if i == 0 then
        verdict, detail = run_specs(dir, specs, timeout)
      else
        verdict, detail = run_mutant(dir, m, specs, timeout)
      end
      local secs = now() - t0
      write_file(string.format("%s/results/%d", base, i), verdict .. "\n" .. (detail or "") .. "\n")
      local line
      if i == 0 then
        line = string.format("[baseline] unmutated suite: %s (%.0f s)\n",
          verdict == "survived" and "passes" or ("FAILS: " .. tostring(detail)), secs)
      else
        line = string.format("[%3d/%d] %-16s %-22s %s  (%.0f s)%s\n", k - skip, #order - skip, verdict, m.id,
          m.sees, secs, detail and ("\n          by " .. detail) or
          (m.equivalent and ("\n          argued equivalent: " .. m.equivalent) or ""))
      end
      io.stdout:write(line)
      io.stdout:flush()
    end
  end
end

local function cmd_run()
  local mutants = load_list(LIST)
  for _, m in ipairs(mutants) do
    local why = check_one(m)
    if why then die(string.format("%s (%s:%d) does not apply: %s; run --check / --relocate", m.id, m.file, m.line, why)) end
  end
  local only = os.getenv("MUTATE_ONLY")
  local chosen = {}
  for i, m in ipairs(mutants) do
    local function hit(s)
      for pat in only:gmatch("[^,%s]+") do
        if s:find(pat, 1, true) then return true end
        if pat:find("[%^%$%(%)%.%[%]%*%+%?%%]") then -- a pattern ("-" alone is no sign of one)
          local ok, found = pcall(string.find, s, pat)
          if ok and found then return true end
        end
      end
      return false
    end
    if not only or only == "" or hit(m.id) or hit(m.file) then chosen[#chosen + 1] = i end
  end
  local specs = {}
  local env_specs = os.getenv("MUTATE_SPECS")
  if env_specs and env_specs:match("%S") then
    for s in env_specs:gmatch("%S+") do specs[#specs + 1] = s end
  else
    specs = default_specs()
  end
  local jobs = math.max(1, math.floor(tonumber(os.getenv("JOBS")) or 2))
  -- An interrupted run (Ctrl-C) leaves its scratch copies, and maybe mock
  -- servers, behind: clear those whose run is gone.
  for old in capture("ls -d /tmp/viggle-mutate.* 2>/dev/null"):gmatch("[^\n]+") do
    local owner = tonumber(read_file(old .. "/owner") or "")
    if owner and not read_file("/proc/" .. owner .. "/stat") then
      reap(old)
      run("rm -rf " .. q(old))
      io.stdout:write("mutate: cleared ", old, ", left by an interrupted run\n")
    end
  end
  local base = capture("mktemp -d /tmp/viggle-mutate.XXXXXXXX"):gsub("%s+$", "")
  if base == "" then die("mktemp failed") end
  write_file(base .. "/owner", capture("echo $PPID"))
  io.stdout:write(string.format("mutate: %d mutants, %d at a time, specs: %s\n", #chosen, jobs, table.concat(specs, " ")))
  io.stdout:flush()
  local t0 = now()
  local jit = table.concat(specs, " "):find("jit:", 1, true) ~= nil
  for slot = 1, jobs do make_scratch(base, slot, jit) end
  write_file(base .. "/specs", table.concat(specs, "\n") .. "\n")
  run("mkdir -p " .. q(base .. "/claims") .. " " .. q(base .. "/results"))
  local order = { 0 } -- 0: the unmutated suite, which must pass
  if os.getenv("MUTATE_BASELINE") == "0" then
    order = {}
    write_file(base .. "/results/0", "survived\n")
  end
  for _, i in ipairs(chosen) do order[#order + 1] = i end
  write_file(base .. "/order", table.concat(order, "\n") .. "\n")
  -- the workers read a copy of the list: editing it meanwhile changes nothing
  write_file(base .. "/list", read_file(LIST))
  local cmds = {}
  for slot = 1, jobs do
    cmds[#cmds + 1] = string.format("MUTATE_LIST=%s %s %s --worker %s %d &", q(base .. "/list"), INTERP,
      q(ROOT .. "/tools/mutate.lua"), q(base), slot)
  end
  run(table.concat(cmds, " ") .. " wait")
  -- the summary
  local tally = { killed = 0, survived = 0, error = 0, timeout = 0 }
  local survivors, errors, not_equivalent, wrongly_equivalent = {}, {}, 0, {}
  local baseline = (read_file(base .. "/results/0") or "missing\n"):match("^[^\n]*")
  for _, i in ipairs(chosen) do
    local res = read_file(string.format("%s/results/%d", base, i)) or "error\nnot run\n"
    local verdict = res:match("^[^\n]*")
    local m = mutants[i]
    if verdict:find("^killed") then
      tally.killed = tally.killed + 1
      if verdict:find("timeout") then tally.timeout = tally.timeout + 1 end
      if m.equivalent then wrongly_equivalent[#wrongly_equivalent + 1] = m end
    elseif verdict == "survived" then
      tally.survived = tally.survived + 1
      survivors[#survivors + 1] = m
      if not m.equivalent then not_equivalent = not_equivalent + 1 end
    else
      tally.error = tally.error + 1
      errors[#errors + 1] = m.id .. ": " .. (res:match("\n([^\n]*)") or "")
    end
  end
  local total = #chosen
  local pct = total > 0 and 100 * tally.killed / total or 0
  io.stdout:write("\n")
  if baseline ~= "survived" then
    io.stdout:write("WARNING: the unmutated suite fails in the scratch copy: every verdict is suspect\n")
  end
  for _, m in ipairs(survivors) do
    io.stdout:write(string.format("survived: %s (%s:%d) %s\n          %s\n", m.id, m.file, m.line, m.sees,
      m.equivalent and ("argued equivalent: " .. m.equivalent) or "NOT argued equivalent: a test is missing"))
  end
  for _, m in ipairs(wrongly_equivalent) do
    io.stdout:write(string.format("killed but listed as equivalent (drop its 'equivalent'): %s\n", m.id))
  end
  for _, e in ipairs(errors) do io.stdout:write("error: ", e, "\n") end
  io.stdout:write(string.format("score: %d of %d killed (%.1f%%)%s; %d survived (%d argued equivalent), %d errors; %.0f s\n",
    tally.killed, total, pct, tally.timeout > 0 and (", " .. tally.timeout .. " by timeout") or "",
    tally.survived, tally.survived - not_equivalent, tally.error, now() - t0))
  run("rm -rf " .. q(base))
  local min = tonumber(os.getenv("MUTATE_MIN")) or 90
  os.exit((baseline == "survived" and pct >= min and tally.error == 0) and 0 or 1)
end

local function cmd_list()
  for _, m in ipairs((load_list(LIST))) do
    io.stdout:write(string.format("%-22s %s:%d  %s\n", m.id, m.file, m.line, m.sees))
  end
end

local args = { unpack(arg or {}) }
if args[1] == "--check" then cmd_check()
elseif args[1] == "--relocate" then cmd_relocate()
elseif args[1] == "--list" then cmd_list()
elseif args[1] == "--worker" then cmd_worker(args[2], tonumber(args[3]))
elseif args[1] == nil then cmd_run()
else die("unknown option " .. tostring(args[1]) .. " (--check, --relocate, --list, or nothing to run)") end
