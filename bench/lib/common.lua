-- bench/lib/common.lua: what every part of the benchmark harness shares: the
-- options of the run and its results (C.quick, C.only, C.cfg, C.R ... : load
-- of a saved run replaces them), small helpers, CPU pinning, and running one
-- measured process.
local support = require("spec.support")
local format = string.format

local C = {}
local OUT = "bench/out"
C.OUT = OUT
-- the snapshot of the library under test that bench/run.sh took
C.LIB = os.getenv("VIGGLE_BENCH_ROOT") or "."

-- ---------------------------------------------------------------------------
-- options

C.quick, C.only, C.replot = false, nil, false
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then C.quick = true
    elseif a == "--replot" then C.replot = true
    elseif a == "--only" then
      C.only = {}
      for n in (arg[i + 1] or ""):gmatch("%d+") do C.only[tonumber(n)] = true end
      i = i + 1
    elseif a == "-h" or a == "--help" then
      print("usage: bash bench/run.sh [--quick] [--only 1,2,3,4,5] [--replot]")
      print("--replot: rewrite bench/README.md and the plots from bench/out/results.json (the last full run)")
      os.exit(0)
    else
      io.stderr:write("bench: unknown argument " .. a .. "\n")
      os.exit(2)
    end
    i = i + 1
  end
end

C.cfg = C.quick and {
  seq_runs = 2, seq_calls = 2000, seq_calls_py = 300, seq_calls_cli = 30, seq_warmup = 100,
  many_runs = 1, many_sizes = { 100, 1000 }, loop_direct = 100, loop_sample = 50,
  dl_runs = 1, dl_size = 64 * 1024 * 1024,
  start_rounds = 2, start_runs = 5, start_warmup = 2,
} or {
  seq_runs = 7, seq_calls = 10000, seq_calls_py = 2000, seq_calls_cli = 300, seq_warmup = 300,
  many_runs = 5, many_sizes = { 100, 1000, 10000 }, loop_direct = 100, loop_sample = 200,
  dl_runs = 5, dl_size = 1024 * 1024 * 1024,
  start_rounds = 5, start_runs = 20, start_warmup = 5,
}
C.DELAY = 0.02            -- seconds the mock adds to every answer (scenario 3)
C.CONC_LOW, C.CONC_HIGH = 256, 1024
C.H2_HOST_CAP = 16        -- CURLMOPT_MAX_HOST_CONNECTIONS of one raw HTTP/2 row

function C.wanted(n) return not C.only or C.only[n] end

-- ---------------------------------------------------------------------------
-- small helpers

C.q, C.read_file, C.write_file, C.capture = support.q, support.read_file, support.write_file, support.capture
local read_file, capture = C.read_file, C.capture

function C.trim(s) return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")) end

function C.say(fmt, ...)
  io.stdout:write(format(fmt, ...), "\n")
  io.stdout:flush()
end

function C.tail(s, n)
  s = C.trim(s)
  n = n or 400
  if #s > n then s = "..." .. s:sub(-n) end
  return s
end

C.NCPU = tonumber(C.trim(capture("nproc 2>/dev/null"))) or 1
C.PIN_CLIENT = (C.NCPU >= 2 and os.execute("command -v taskset >/dev/null 2>&1")) and "taskset -c 0 " or ""
C.pinned = C.PIN_CLIENT ~= ""

os.execute("mkdir -p " .. OUT .. "/pids " .. OUT .. "/tmp")

-- Every nginx this run starts is listed in OUT/pids (pid, prefix) so that
-- bench/run.sh can stop it if this process dies.
function C.track(name, pid, prefix)
  C.write_file(OUT .. "/pids/" .. name, format("%s %s\n", tostring(pid), prefix or ""))
end
function C.untrack(name) os.remove(OUT .. "/pids/" .. name) end

-- ---------------------------------------------------------------------------
-- running one measured process

-- Runs `cmd` (a shell command) pinned to the client CPU under /usr/bin/time.
-- Returns a table of the key=value pairs it printed plus proc_wall, proc_cpu
-- (user+sys, s), rss_kb (peak RSS); or nil, err.
function C.measure(cmd, opts)
  opts = opts or {}
  local tf, of, ef = OUT .. "/tmp/time.txt", OUT .. "/tmp/stdout.txt", OUT .. "/tmp/stderr.txt"
  os.remove(tf)
  local full = format("%s/usr/bin/time -f '%%e %%U %%S %%M' -o %s %s >%s 2>%s", opts.env or "", tf,
    (opts.nopin and "" or C.PIN_CLIENT) .. cmd, of, ef)
  local ok = os.execute(full)
  local out, err, t = read_file(of) or "", read_file(ef) or "", read_file(tf) or ""
  if not ok then
    return nil, format("failed: %s: %s", cmd, C.tail(err ~= "" and err or out))
  end
  local r = {}
  for k, v in out:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  local e, u, s, m = t:match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)%s*$")
  if not e then return nil, "no /usr/bin/time output for " .. cmd end
  r.proc_wall, r.proc_cpu, r.rss_kb = tonumber(e), tonumber(u) + tonumber(s), tonumber(m)
  r.stdout = out
  return r
end

-- ---------------------------------------------------------------------------
-- results

C.R = { quick = C.quick, cfg = C.cfg, pinned = C.pinned, scenarios = {} }

return C
