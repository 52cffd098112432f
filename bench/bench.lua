-- bench/bench.lua: the benchmarks of issue 6, run by bench/run.sh from the
-- repository root (lua5.4 with LuaSocket and lua-cjson).
--
--   lua5.4 bench/bench.lua [--quick] [--only 1,3,...]
--
-- Scenarios: 1 sequential status calls over keep-alive HTTP, 2 the same over
-- TLS, 3 many jobs (await_all vs a plain loop) with 20 ms per answer, 4 a
-- 1 GiB download, 5 start-up of one `viggle status` process. Every contender
-- runs several times, interleaved with the others (run 1 of each, then run 2
-- of each, ...), so a slow moment of the machine hits every contender alike.
-- Writes bench/README.md and bench/*.png (a --quick run writes them under
-- bench/out/ instead), keeps raw figures in bench/out/results.json, and prints
-- a summary. Servers (a static nginx and the mock) are pinned to CPU 1 and
-- clients to CPU 0 when the machine has two CPUs or more.
-- The library under test is the snapshot bench/run.sh took of lua/, bin/ and
-- the built module (VIGGLE_BENCH_ROOT), so that edits made to the checkout
-- during a run cannot mix two versions into one report.
local LIB = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.path = LIB .. "/lua/?.lua;" .. LIB .. "/lua/?/init.lua;./?.lua;" .. package.path
package.cpath = LIB .. "/build/5.4/?.so;" .. package.cpath

local cjson = require("cjson")
local socket = require("socket")
local mock = require("spec.mock.server")

local format, concat = string.format, table.concat
local OUT = "bench/out"

-- ---------------------------------------------------------------------------
-- options

local QUICK, ONLY, REPLOT = false, nil, false
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then QUICK = true
    elseif a == "--replot" then REPLOT = true
    elseif a == "--only" then
      ONLY = {}
      for n in (arg[i + 1] or ""):gmatch("%d+") do ONLY[tonumber(n)] = true end
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

local CFG = QUICK and {
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
local DELAY = 0.02            -- seconds the mock adds to every answer (scenario 3)
local CONC_LOW, CONC_HIGH = 256, 1024
local H2_HOST_CAP = 16        -- CURLMOPT_MAX_HOST_CONNECTIONS of one raw HTTP/2 row

local function wanted(n) return not ONLY or ONLY[n] end

-- ---------------------------------------------------------------------------
-- small helpers

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function capture(cmd)
  local p = io.popen(cmd)
  local out = p:read("a") or ""
  p:close()
  return out
end

local function trim(s) return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")) end

local function say(fmt, ...)
  io.stdout:write(format(fmt, ...), "\n")
  io.stdout:flush()
end

local function tail(s, n)
  s = trim(s)
  n = n or 400
  if #s > n then s = "..." .. s:sub(-n) end
  return s
end

local NCPU = tonumber(trim(capture("nproc 2>/dev/null"))) or 1
local PIN_CLIENT = (NCPU >= 2 and os.execute("command -v taskset >/dev/null 2>&1")) and "taskset -c 0 " or ""
local PINNED = PIN_CLIENT ~= ""

os.execute("mkdir -p " .. OUT .. "/pids " .. OUT .. "/tmp")

-- a free TCP port on 127.0.0.1 (the kernel picks it)
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Every nginx this run starts is listed in OUT/pids (pid, prefix) so that
-- bench/run.sh can stop it if this process dies.
local function track(name, pid, prefix)
  write_file(OUT .. "/pids/" .. name, format("%s %s\n", tostring(pid), prefix or ""))
end
local function untrack(name) os.remove(OUT .. "/pids/" .. name) end

-- ---------------------------------------------------------------------------
-- statistics and formatting

local function stats(xs)
  local t = {}
  for i = 1, #xs do if xs[i] == xs[i] then t[#t + 1] = xs[i] end end -- drop NaN
  if #t == 0 then return nil end
  table.sort(t)
  local n = #t
  local med = (n % 2 == 1) and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
  return { median = med, min = t[1], max = t[n], n = n }
end

local function num(x)
  if x == nil or x ~= x then return "n/a" end
  local a = math.abs(x)
  if a >= 1000 then return format("%.0f", x)
  elseif a >= 100 then return format("%.0f", x)
  elseif a >= 10 then return format("%.1f", x)
  elseif a >= 1 then return format("%.2f", x)
  elseif a >= 0.01 then return format("%.3f", x)
  else return format("%.4f", x) end
end

local function thousands(x)
  local s = format("%.0f", x)
  local out = s:reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (out:gsub("^,", ""))
end

-- "median (min-max)" for a stats table
local function cell(st, f)
  if not st then return "n/a" end
  f = f or num
  if st.n == 1 or st.min == st.max then return f(st.median) end
  return format("%s (%s–%s)", f(st.median), f(st.min), f(st.max))
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "n/a" end
  return format("%.2f×", a / b)
end

-- the paired ratio of a row (median, and min–max over runs) if there is
-- one, else the ratio of the medians
local function pratio(row, key, ref)
  local p = row and row.pair and row.pair[key]
  if row and row.ref then return "1.00×" end
  if p then
    if p.n == 1 or p.min == p.max then return format("%.2f×", p.median) end
    return format("%.2f× (%.2f–%.2f)", p.median, p.min, p.max)
  end
  local a = row and row.st and row.st[key] and row.st[key].median
  local b = ref and ref.st and ref.st[key] and ref.st[key].median
  return ratio(a, b)
end

-- ---------------------------------------------------------------------------
-- running one measured process

-- Runs `cmd` (a shell command) pinned to the client CPU under /usr/bin/time.
-- Returns a table of the key=value pairs it printed plus proc_wall, proc_cpu
-- (user+sys, s), rss_kb (peak RSS); or nil, err.
local function measure(cmd, opts)
  opts = opts or {}
  local tf, of, ef = OUT .. "/tmp/time.txt", OUT .. "/tmp/stdout.txt", OUT .. "/tmp/stderr.txt"
  os.remove(tf)
  local full = format("%s/usr/bin/time -f '%%e %%U %%S %%M' -o %s %s >%s 2>%s", opts.env or "", tf,
    (opts.nopin and "" or PIN_CLIENT) .. cmd, of, ef)
  local ok = os.execute(full)
  local out, err, t = read_file(of) or "", read_file(ef) or "", read_file(tf) or ""
  if not ok then
    return nil, format("failed: %s: %s", cmd, tail(err ~= "" and err or out))
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
-- the static nginx (scenarios 1, 2, 5)

local Static = {}
Static.__index = Static

local function is_root() return trim(capture("id -u")) == "0" end

local function start_static()
  local prefix = OUT .. "/static"
  local abs = trim(capture("pwd")) .. "/" .. prefix
  os.execute("rm -rf " .. q(abs) .. " && mkdir -p " .. q(abs .. "/tmp") .. " " .. q(abs .. "/html"))
  os.execute("cp bench/status.json " .. q(abs .. "/html/status.json"))
  local certs = assert(mock.make_cert(abs .. "/tls"))
  local tpl = assert(read_file("bench/nginx/static.conf.in"))
  local last
  for _ = 1, 5 do
    local ports = { HTTP_PORT = free_port(), TLS_PORT = free_port(), H2_PORT = free_port() }
    if ports.HTTP_PORT ~= ports.TLS_PORT and ports.TLS_PORT ~= ports.H2_PORT and ports.HTTP_PORT ~= ports.H2_PORT then
      local conf = tpl:gsub("@([%u_%d]+)@", function(k)
        if k == "PREFIX" then return abs end
        if k == "USER_LINE" then return is_root() and "user root;" or "" end
        return tostring(assert(ports[k], "static.conf.in: no value for " .. k))
      end)
      write_file(abs .. "/nginx.conf", conf)
      local cmd = format("%snginx -p %s/ -c %s/nginx.conf -e %s/error.log >%s/start.log 2>&1",
        PINNED and "taskset -c 1 " or "", q(abs), q(abs), q(abs), q(abs))
      if os.execute(cmd) then
        local s = setmetatable({
          prefix = abs, ca_file = certs.ca_file,
          http = "http://127.0.0.1:" .. ports.HTTP_PORT,
          tls = "https://127.0.0.1:" .. ports.TLS_PORT,
          h2 = "https://127.0.0.1:" .. ports.H2_PORT,
        }, Static)
        for _ = 1, 100 do
          if trim(capture("curl -s -o /dev/null -w '%{http_code}' " .. s.http .. "/api/render/job_bench")) == "200" then
            s.pid = tonumber(trim(read_file(abs .. "/nginx.pid") or ""))
            track("static", s.pid, abs)
            return s
          end
          socket.sleep(0.05)
        end
        last = "nginx started but does not answer"
        break
      end
      last = read_file(abs .. "/start.log") or "nginx failed"
    end
  end
  error("static nginx: " .. tostring(last))
end

function Static:accepts()
  local s = capture("curl -s " .. self.http .. "/nginx_status")
  local accepts = s:match("\n%s*(%d+)%s+%d+%s+%d+")
  return tonumber(accepts)
end

function Static:stop()
  if self.pid then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not os.execute("kill -0 " .. self.pid .. " 2>/dev/null") then break end
      socket.sleep(0.05)
    end
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  untrack("static")
end

-- ---------------------------------------------------------------------------
-- the mock (scenarios 3, 4)

local function start_mock()
  local m = assert(mock.start({ tls = true }))
  track("mock", m:pid(), m.prefix)
  return m
end

local function stop_mock(m)
  if m then m:stop() end
  untrack("mock")
end

-- ---------------------------------------------------------------------------
-- machine facts

local function facts()
  local f = {}
  local lscpu = capture("lscpu 2>/dev/null")
  f.cpu = trim(lscpu:match("Model name:%s*([^\n]+)") or "?")
  f.ncpu = NCPU
  f.hypervisor = trim(lscpu:match("Hypervisor vendor:%s*([^\n]+)") or "")
  f.mhz = trim(lscpu:match("CPU max MHz:%s*([^\n]+)") or "")
  f.mem = trim(capture("free -g | awk '/^Mem:/ {print $2}'"))
  f.kernel = trim(capture("uname -sr"))
  f.os = trim(capture(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\""))
  f.curl = trim(capture("curl --version | head -1"))
  local core = require("viggle.core")
  f.libcurl_viggle = core.curl_version .. " (" .. core.ssl_version .. ")"
  f.lua = trim(capture("lua5.4 -v 2>&1"))
  f.cjson = tostring(cjson._VERSION)
  f.luasocket = tostring(socket._VERSION):gsub("^LuaSocket%s*", "")
  f.luasec = trim(capture("lua5.4 -e 'print(require(\"ssl\")._VERSION)' 2>/dev/null"))
  f.nginx = trim(capture("nginx -v 2>&1"):gsub("nginx version: ", ""))
  f.python = trim(capture("/usr/bin/python3 -c 'import sys; print(sys.version.split()[0])'"))
  f.requests = trim(capture("/usr/bin/python3 -c 'import requests, urllib3; "
    .. "print(requests.__version__, \"(urllib3\", urllib3.__version__ + \")\")'"))
  f.hyperfine = trim(capture("hyperfine --version"))
  f.gcc = trim(capture("gcc --version | head -1"))
  f.viggle = core.version
  -- which library: bench/run.sh names the snapshot it took (commit, plus a
  -- hash of any uncommitted diff of lua/, csrc/, bin/)
  f.commit = os.getenv("VIGGLE_BENCH_COMMIT")
  if not f.commit or f.commit == "" then
    f.commit = trim(capture("git rev-parse --short HEAD 2>/dev/null"))
    local dirty = trim(capture("git status --porcelain -- lua csrc bin 2>/dev/null"))
    if dirty ~= "" then
      local sum = trim(capture("git diff HEAD -- lua csrc bin 2>/dev/null | sha1sum")):sub(1, 10)
      f.commit = format("%s + uncommitted changes to lua/, csrc/ or bin/ (diff sha1 %s)", f.commit, sum)
    end
  end
  f.date = os.date("!%Y-%m-%d %H:%M UTC")
  return f
end

-- ---------------------------------------------------------------------------
-- results

local R = { quick = QUICK, cfg = CFG, pinned = PINNED, scenarios = {} }

local function contender_stats(samples, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local xs = {}
    for _, s in ipairs(samples) do xs[#xs + 1] = s[k] or (0 / 0) end
    out[k] = stats(xs)
  end
  return out
end

-- Ratios of one contender to the reference run by run (run i of both were
-- measured back to back, so a slow spell of the machine cancels out).
-- samples: lists of results carrying .run; returns {key = stats of ratios}.
local function paired(samples, ref_samples, keys)
  local by_run = {}
  for _, r in ipairs(ref_samples or {}) do by_run[r.run] = r end
  local out = {}
  for _, k in ipairs(keys) do
    local xs = {}
    for _, r in ipairs(samples or {}) do
      local b = by_run[r.run]
      if b and r[k] and b[k] and b[k] ~= 0 then xs[#xs + 1] = r[k] / b[k] end
    end
    out[k] = stats(xs)
  end
  return out
end

-- ---------------------------------------------------------------------------
-- scenarios 1 and 2: sequential status calls

local JOB = "job_7f3a9c2e1b5d4e60"

-- curl CLI: a bash loop running curl once per call; the loop's own cost is
-- measured with /bin/true in its place and taken off.
local function cli_loop_cmd(n, inner)
  return format("bash -c %s", q(format("for ((i=0;i<%d;i++)); do %s || exit 1; done", n, inner)))
end

local function seq_contenders(st, tls)
  local N, NP, W = CFG.seq_calls, CFG.seq_calls_py, CFG.seq_warmup
  local list = {}
  local function add(c) list[#list + 1] = c end
  if not tls then
    add({ key = "raw", name = "raw libcurl loop (C, the floor)", ref = true, calls = N,
          cmd = format("bench/out/raw_curl %s %d %d", q(st.http .. "/api/render/" .. JOB), N, W) })
    add({ key = "viggle", name = "viggle `c:status` (retries=0)", calls = N, viggle = true,
          cmd = format("lua5.4 bench/clients/seq_viggle.lua %s %s %d %d", st.http, JOB, N, W) })
    add({ key = "luasocket", name = "LuaSocket + lua-cjson (raw keep-alive socket)", calls = N,
          cmd = format("lua5.4 bench/clients/seq_luasocket.lua %s %s %d %d", st.http, JOB, N, W) })
    add({ key = "requests", name = "Python requests (Session)", calls = NP,
          cmd = format("/usr/bin/python3 bench/clients/seq_requests.py %s %s %d %d", st.http, JOB, NP, math.min(W, NP)) })
    add({ key = "curl_cli", name = "curl CLI, one process per call", calls = CFG.seq_calls_cli, cli = true,
          cmd = cli_loop_cmd(CFG.seq_calls_cli, "curl -s -o /dev/null " .. q(st.http .. "/api/render/" .. JOB)),
          base = cli_loop_cmd(CFG.seq_calls_cli, "/bin/true") })
  else
    local ca = st.ca_file
    add({ key = "raw", name = "raw libcurl loop (C, the floor), HTTP/1.1", ref = true, calls = N,
          cmd = format("bench/out/raw_curl %s %d %d %s", q(st.tls .. "/api/render/" .. JOB), N, W, q(ca)) })
    add({ key = "viggle", name = "viggle `c:status`, HTTP/1.1", calls = N, viggle = true,
          cmd = format("lua5.4 bench/clients/seq_viggle.lua %s %s %d %d %s", st.tls, JOB, N, W, q(ca)) })
    add({ key = "raw_h2", name = "raw libcurl loop (C), HTTP/2", calls = N,
          cmd = format("bench/out/raw_curl %s %d %d %s", q(st.h2 .. "/api/render/" .. JOB), N, W, q(ca)) })
    add({ key = "viggle_h2", name = "viggle `c:status`, HTTP/2", calls = N, viggle = true,
          cmd = format("lua5.4 bench/clients/seq_viggle.lua %s %s %d %d %s", st.h2, JOB, N, W, q(ca)) })
    add({ key = "luasocket", name = "LuaSocket + LuaSec + lua-cjson, HTTP/1.1", calls = N,
          cmd = format("lua5.4 bench/clients/seq_luasocket.lua %s %s %d %d %s", st.tls, JOB, N, W, q(ca)) })
    add({ key = "requests", name = "Python requests (Session), HTTP/1.1", calls = NP,
          cmd = format("/usr/bin/python3 bench/clients/seq_requests.py %s %s %d %d %s", st.tls, JOB, NP,
                       math.min(W, NP), q(ca)) })
  end
  return list
end

local function scenario_seq(st, id, tls)
  local title = tls and "Sequential status calls over TLS" or "Sequential status calls over keep-alive HTTP"
  say("\n== %d. %s (%d runs)", id, title, CFG.seq_runs)
  local list = seq_contenders(st, tls)
  local samples = {}
  local errors = {}
  for run = 1, CFG.seq_runs do
    for _, c in ipairs(list) do
      samples[c.key] = samples[c.key] or {}
      local a0 = st:accepts()
      local r, err = measure(c.cmd)
      local a1 = st:accepts()
      if r and c.cli then
        local b, berr = measure(c.base)
        if not b then r, err = nil, berr
        else
          r.cpu_s = r.proc_cpu - b.proc_cpu
          r.wall_s = r.proc_wall - b.proc_wall
          r.calls = c.calls
          r.loop_cpu_us = b.proc_cpu / c.calls * 1e6
        end
      end
      if r then
        r.cpu_us = r.cpu_s / r.calls * 1e6
        r.rate = r.calls / r.wall_s
        r.conns = (a0 and a1) and (a1 - a0 - 1) or nil
        r.run = run
        samples[c.key][#samples[c.key] + 1] = r
        say("  run %d  %-48s %8.1f µs CPU/call %9.0f calls/s  conns %s", run, c.name, r.cpu_us, r.rate,
          tostring(r.conns))
      else
        errors[c.key] = err
        say("  run %d  %-48s FAILED: %s", run, c.name, err)
      end
    end
  end
  local rows = {}
  local ref_key
  for _, c in ipairs(list) do if c.ref then ref_key = c.key end end
  for _, c in ipairs(list) do
    local s = samples[c.key] or {}
    local row = { key = c.key, name = c.name, ref = c.ref, viggle = c.viggle, calls = c.calls, error = errors[c.key],
                  runs = #s, st = contender_stats(s, { "cpu_us", "rate", "conns", "rss_kb" }),
                  pair = paired(s, samples[ref_key], { "cpu_us", "rate" }) }
    if c.cli and s[1] then row.loop_cpu_us = s[1].loop_cpu_us end
    rows[#rows + 1] = row
  end
  R.scenarios[id] = { id = id, title = title, rows = rows, tls = tls }
end

-- ---------------------------------------------------------------------------
-- scenario 3: many jobs

local function ids_file(ids)
  local path = OUT .. "/tmp/ids.txt"
  write_file(path, concat(ids, "\n") .. "\n")
  return path
end

-- fresh jobs that complete on their first poll, the mock answering after DELAY
local function fresh_jobs(m, n)
  m:reset()
  m:config({ delay = DELAY })
  return m:jobs({ count = n, statuses = { "complete" } })
end

local function api_counts(m)
  local r = m:control("GET", "/_mock/connections")
  if not r then return nil, nil end
  return r.api.connections, r.api.requests
end

local function many_contenders(m)
  local ca = m.ca_file
  local list = {}
  for _, proto in ipairs({ { "HTTP/1.1", m.base_url }, { "HTTP/2 (TLS)", m.tls_base_url } }) do
    local label, base = proto[1], proto[2]
    for _, conc in ipairs({ CONC_LOW, CONC_HIGH }) do
      list[#list + 1] = { key = format("viggle_%s_%d", label:match("^HTTP/(%d)"), conc), proto = label, conc = conc,
        name = format("viggle `await_all`, concurrency %d", conc), viggle = true, await_all = true,
        cmd = function(f) return format("lua5.4 bench/clients/await_viggle.lua await_all %s %s %d %s", base, f, conc, q(ca)) end }
    end
    if label:match("^HTTP/2") then
      list[#list + 1] = { key = "viggle_2_cap", proto = label, conc = CONC_HIGH, viggle = true, tuned = true,
        name = format("viggle `await_all`, concurrency %d, `viggle.configure{max_host_connections = %d}`",
          CONC_HIGH, H2_HOST_CAP),
        cmd = function(f)
          return format("lua5.4 bench/clients/await_viggle.lua await_all %s %s %d %s %d", base, f, CONC_HIGH, q(ca),
            H2_HOST_CAP)
        end }
    end
    if label == "HTTP/1.1" then
      list[#list + 1] = { key = "pool_1", proto = label, conc = CONC_LOW, viggle = true,
        name = format("viggle worker pool: %d tasks (`viggle.spawn`) × `c:status`", CONC_LOW),
        cmd = function(f) return format("lua5.4 bench/clients/await_viggle.lua pool %s %s %d", base, f, CONC_LOW) end }
    end
    list[#list + 1] = { key = format("raw_%s", label:match("^HTTP/(%d)")), proto = label, conc = CONC_HIGH,
      name = format("raw libcurl multi (C), concurrency %d", CONC_HIGH),
      cmd = function(f) return format("bench/out/raw_multi %s %s %d %s", base, f, CONC_HIGH, q(ca)) end }
    if label:match("^HTTP/2") then
      -- the same with CURLMOPT_MAX_HOST_CONNECTIONS: libcurl then queues the
      -- transfers until HTTP/2 streams are free instead of opening a
      -- connection for each (see the notes under the tables)
      list[#list + 1] = { key = "raw_2_cap", proto = label, conc = CONC_HIGH,
        name = format("raw libcurl multi (C), concurrency %d, %d connections per host", CONC_HIGH, H2_HOST_CAP),
        cmd = function(f) return format("bench/out/raw_multi %s %s %d %s %d", base, f, CONC_HIGH, q(ca), H2_HOST_CAP) end }
    end
  end
  return list
end

local function scenario_many(m)
  say("\n== 3. Many jobs, %g ms per answer (%d runs)", DELAY * 1000, CFG.many_runs)
  local list = many_contenders(m)
  local samples = {}   -- [key][size] = list of results
  local errors = {}
  for _, size in ipairs(CFG.many_sizes) do
    for run = 1, CFG.many_runs do
      for _, c in ipairs(list) do
        local ids = fresh_jobs(m, size)
        local r, err = measure(c.cmd(ids_file(ids)))
        if r then
          r.conns, r.requests = api_counts(m)
          if r.complete ~= size then err = format("%s of %d jobs complete", tostring(r.complete), size) r = nil end
        end
        samples[c.key] = samples[c.key] or {}
        samples[c.key][size] = samples[c.key][size] or {}
        if r then
          local t = samples[c.key][size]
          t[#t + 1] = r
          say("  %6d jobs run %d  %-13s %-42s %7.3f s wall %6.3f s CPU %6.1f MiB  %5s conns %6s requests",
            size, run, c.proto, c.name, r.wall_s, r.cpu_s, r.rss_kb / 1024, tostring(r.conns), tostring(r.requests))
        else
          errors[c.key] = err
          say("  %6d jobs run %d  %-13s %-42s FAILED: %s", size, run, c.proto, c.name, tostring(err))
        end
      end
    end
  end
  -- the plain loop, one job after another: 100 jobs measured, and a sample
  -- the larger sizes are extrapolated from
  local loops = {
    { key = "loop_viggle", name = "plain loop, viggle `c:status` one job after another", ref = true,
      cmd = function(f) return format("lua5.4 bench/clients/await_viggle.lua loop %s %s 1", m.base_url, f) end },
    { key = "loop_requests", name = "plain loop, Python requests Session",
      cmd = function(f) return format("/usr/bin/python3 bench/clients/loop_requests.py %s %s", m.base_url, f) end },
  }
  local loop_samples = {}
  for run = 1, CFG.many_runs do
    for _, c in ipairs(loops) do
      loop_samples[c.key] = loop_samples[c.key] or { direct = {}, sample = {} }
      for _, what in ipairs({ { "direct", CFG.loop_direct }, { "sample", CFG.loop_sample } }) do
        local ids = fresh_jobs(m, what[2])
        local r, err = measure(c.cmd(ids_file(ids)))
        if r then r.conns, r.requests = api_counts(m) end
        if r and r.complete == what[2] then
          local t = loop_samples[c.key][what[1]]
          t[#t + 1] = r
          say("  %6d jobs run %d  %-13s %-42s %7.3f s wall %6.3f s CPU %6.1f MiB  %5s conns", what[2], run, "HTTP/1.1",
            c.name, r.wall_s, r.cpu_s, r.rss_kb / 1024, tostring(r.conns))
        else
          errors[c.key] = err or "not every job complete"
          say("  %6d jobs run %d  %-42s FAILED: %s", what[2], run, c.name, tostring(errors[c.key]))
        end
      end
    end
  end
  -- rows per size
  local tables = {}
  for _, size in ipairs(CFG.many_sizes) do
    local rows = {}
    for _, c in ipairs(loops) do
      local ls = loop_samples[c.key]
      local row = { key = c.key, name = c.name, proto = "HTTP/1.1", conc = 1, ref = c.ref, error = errors[c.key] }
      if size == CFG.loop_direct and #ls.direct > 0 then
        row.st = contender_stats(ls.direct, { "wall_s", "cpu_s", "rss_kb", "conns", "requests" })
        row.measured = true
      elseif #ls.sample > 0 then
        local scaled = {}
        for _, r in ipairs(ls.sample) do
          scaled[#scaled + 1] = { wall_s = r.wall_s / CFG.loop_sample * size, cpu_s = r.cpu_s / CFG.loop_sample * size,
                                  rss_kb = r.rss_kb, conns = r.conns, requests = size }
        end
        row.st = contender_stats(scaled, { "wall_s", "cpu_s", "rss_kb", "conns", "requests" })
        row.extrapolated = CFG.loop_sample
      end
      rows[#rows + 1] = row
    end
    for _, c in ipairs(list) do
      local s = samples[c.key] and samples[c.key][size] or {}
      rows[#rows + 1] = { key = c.key, name = c.name, proto = c.proto, conc = c.conc, viggle = c.viggle,
        await_all = c.await_all, tuned = c.tuned,
        error = (#s == 0) and errors[c.key] or nil, runs = #s,
        st = contender_stats(s, { "wall_s", "cpu_s", "rss_kb", "conns", "requests" }) }
    end
    tables[#tables + 1] = { size = size, rows = rows }
  end
  R.scenarios[3] = { id = 3, title = "Many jobs", tables = tables, delay = DELAY }
end

-- ---------------------------------------------------------------------------
-- scenario 4: download

local function dl_dir()
  -- tmpfs when it has room: the figures then measure the client, not the disk
  local avail = tonumber(trim(capture("df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}'"))) or 0
  local need = math.floor(CFG.dl_size / 1024 * 2.5)
  local dir
  if avail > need then
    dir = trim(capture("mktemp -d /dev/shm/viggle-bench.XXXXXXXX"))
  else
    dir = trim(capture("pwd")) .. "/" .. OUT .. "/dl"
    os.execute("mkdir -p " .. q(dir))
  end
  track("dl", 0, dir)
  return dir
end

local function md5(path)
  return (capture("md5sum " .. q(path)):match("^(%x+)"))
end

local function scenario_download(m)
  say("\n== 4. Download of %s (%d runs)", CFG.dl_size >= 2 ^ 30 and format("%g GiB", CFG.dl_size / 2 ^ 30)
    or format("%g MiB", CFG.dl_size / 2 ^ 20), CFG.dl_runs)
  m:reset()
  local big = m:big(CFG.dl_size)
  os.execute("sync")
  local want = md5(big)
  local url = m.cdn_base .. "/video/big.mp4"
  local dir = dl_dir()
  local list = {
    { key = "curl", name = "curl -o FILE", ref = true,
      cmd = function(p) return format("curl -sS -o %s -w 'wall_s=%%{time_total}\\n' %s", q(p), q(url)) end },
    { key = "viggle", name = "viggle `c:download`", viggle = true,
      cmd = function(p) return format("lua5.4 bench/clients/download_viggle.lua %s %s", q(url), q(p)) end },
    { key = "iter", name = "Python requests `iter_content` (1 MiB chunks)",
      cmd = function(p) return format("/usr/bin/python3 bench/clients/download_requests.py iter %s %s", q(url), q(p)) end },
    { key = "content", name = "Python requests `.content` (the API docs' example)",
      cmd = function(p) return format("/usr/bin/python3 bench/clients/download_requests.py content %s %s", q(url), q(p)) end },
  }
  -- Untimed: one pass so the server's file is in the page cache, then one
  -- download by each client (the first writes of a run into fresh memory are
  -- much slower on this VM, whoever makes them).
  os.execute(format("curl -s -o /dev/null %s", q(url)))
  for _, c in ipairs(list) do
    local path = dir .. "/warmup.mp4"
    os.execute(c.cmd(path) .. " >/dev/null 2>&1")
    os.remove(path)
    os.remove(path .. ".part")
  end
  local samples, errors, md5ok = {}, {}, {}
  for run = 1, CFG.dl_runs do
    for _, c in ipairs(list) do
      local path = dir .. "/" .. c.key .. ".mp4"
      os.remove(path)
      local r, err = measure(c.cmd(path))
      if r then
        local size = tonumber(trim(capture("stat -c %s " .. q(path) .. " 2>/dev/null")))
        local sum = md5(path)
        md5ok[c.key] = (md5ok[c.key] ~= false) and (sum == want)
        if size ~= CFG.dl_size or sum ~= want then
          err = format("got %s bytes, md5 %s (want %d, %s)", tostring(size), tostring(sum), CFG.dl_size, want)
          r = nil
        else
          r.mib_s = CFG.dl_size / 2 ^ 20 / r.wall_s
          r.run = run
          samples[c.key] = samples[c.key] or {}
          samples[c.key][#samples[c.key] + 1] = r
          say("  run %d  %-50s %7.0f MiB/s %6.3f s wall %6.3f s CPU %8.1f MiB peak RSS  md5 ok", run, c.name,
            r.mib_s, r.wall_s, r.proc_cpu, r.rss_kb / 1024)
        end
      end
      if not r then
        errors[c.key] = err
        md5ok[c.key] = false
        say("  run %d  %-50s FAILED: %s", run, c.name, tostring(err))
      end
      os.remove(path)
      os.remove(path .. ".part")
    end
  end
  os.execute("rm -rf " .. q(dir))
  untrack("dl")
  local rows = {}
  for _, c in ipairs(list) do
    local s = samples[c.key] or {}
    rows[#rows + 1] = { key = c.key, name = c.name, ref = c.ref, viggle = c.viggle, error = errors[c.key],
      md5 = md5ok[c.key], runs = #s, st = contender_stats(s, { "mib_s", "wall_s", "proc_cpu", "rss_kb" }),
      pair = paired(s, samples.curl, { "mib_s" }) }
  end
  R.scenarios[4] = { id = 4, title = "Download", rows = rows, size = CFG.dl_size, md5 = want,
                     target_dir = dir:match("^/dev/shm") and "tmpfs (/dev/shm)" or "disk (bench/out/dl)" }
end

-- ---------------------------------------------------------------------------
-- scenario 5: start-up

local function scenario_startup(st)
  say("\n== 5. Start-up: one status call as a whole process (hyperfine, %d rounds of %d runs)", CFG.start_rounds,
    CFG.start_runs)
  local url = st.http .. "/api/render/" .. JOB
  local viggle_bin = LIB .. "/bin/viggle"
  local check = capture(format("VIGGLE_BASE_URL=%s %s status %s 2>&1", st.http, q(viggle_bin), JOB))
  if not check:find("complete", 1, true) then
    say("  bin/viggle status FAILED: %s", tail(check))
    R.scenarios[5] = { id = 5, title = "Start-up", error = "bin/viggle status failed: " .. tail(check) }
    return
  end
  local cmds = {
    { key = "curl", name = "`curl -s URL`", ref = true, cmd = "curl -s " .. url },
    { key = "viggle", name = "`bin/viggle status JOB`", viggle = true, cmd = viggle_bin .. " status " .. JOB },
    { key = "python", name = "Python: `import requests; requests.get(URL).json()`",
      cmd = format("/usr/bin/python3 -c \"import requests; requests.get('%s').json()\"", url) },
  }
  local parts = {}
  for _, c in ipairs(cmds) do parts[#parts + 1] = q(c.cmd) end
  -- Several hyperfine rounds, each running every command: a slow spell of the
  -- machine then hits one round of each command, not all runs of one.
  local per = {}   -- [key] = { round medians (ms) }, plus user/sys sums
  for round = 1, CFG.start_rounds do
    local json = format("%s/startup-%d.json", OUT, round)
    local cmd = format("VIGGLE_BASE_URL=%s %shyperfine -N --style basic --warmup %d --runs %d --export-json %s %s "
      .. ">%s/tmp/hyperfine.txt 2>&1", st.http, PIN_CLIENT, CFG.start_warmup, CFG.start_runs, json,
      concat(parts, " "), OUT)
    if not os.execute(cmd) then
      local err = tail(read_file(OUT .. "/tmp/hyperfine.txt") or "")
      say("  hyperfine FAILED: %s", err)
      R.scenarios[5] = { id = 5, title = "Start-up", error = err }
      return
    end
    local data = cjson.decode(read_file(json))
    local line = {}
    for i, c in ipairs(cmds) do
      local h = data.results[i]
      local times = {}
      for k, t in ipairs(h.times) do times[k] = t * 1000 end
      local p = per[c.key] or { ms = {}, user = 0, sys = 0, all = {} }
      per[c.key] = p
      p.ms[#p.ms + 1] = stats(times).median
      p.rounds = p.rounds or {}
      p.rounds[#p.rounds + 1] = { run = round, ms = p.ms[#p.ms] }
      for _, t in ipairs(times) do p.all[#p.all + 1] = t end
      p.user, p.sys = p.user + h.user * 1000, p.sys + h.system * 1000
      line[#line + 1] = format("%s %.2f ms", c.key, p.ms[#p.ms])
    end
    say("  round %d  median: %s", round, concat(line, ", "))
  end
  local rows = {}
  for _, c in ipairs(cmds) do
    local p = per[c.key]
    local all = stats(p.all)
    rows[#rows + 1] = { key = c.key, name = c.name, ref = c.ref, viggle = c.viggle, st = { ms = stats(p.ms) },
      all = all, user_ms = p.user / CFG.start_rounds, sys_ms = p.sys / CFG.start_rounds,
      pair = paired(p.rounds, per.curl.rounds, { "ms" }) }
    say("  %-55s median %6.2f ms (rounds %.2f–%.2f; processes %.2f–%.2f), user %.2f ms, sys %.2f ms", c.name,
      rows[#rows].st.ms.median, rows[#rows].st.ms.min, rows[#rows].st.ms.max, all.min, all.max,
      rows[#rows].user_ms, rows[#rows].sys_ms)
  end
  R.scenarios[5] = { id = 5, title = "Start-up", rows = rows }
end

-- ---------------------------------------------------------------------------
-- targets

local function find(rows, key)
  for _, r in ipairs(rows or {}) do if r.key == key then return r end end
end

local function med(row, k) return row and row.st and row.st[k] and row.st[k].median end

-- the run-by-run ratio to the reference (median and range), else the ratio of medians
local function pair_of(row, ref, k)
  local p = row and row.pair and row.pair[k]
  if p then return p.median, p end
  local a, b = med(row, k), med(ref, k)
  return a and b and b ~= 0 and a / b or nil, nil
end

local function range_note(p)
  if not p or p.n == 1 or p.min == p.max then return "" end
  return format(", runs %.2f–%.2f", p.min, p.max)
end

local function targets()
  local T = {}
  local s1 = R.scenarios[1]
  if s1 then
    local vrow, rawrow = find(s1.rows, "viggle"), find(s1.rows, "raw")
    local v, raw = med(vrow, "cpu_us"), med(rawrow, "cpu_us")
    local r, p = pair_of(vrow, rawrow, "cpu_us")
    T[#T + 1] = { name = "Sequential status: client CPU per call ≤ 1.15× the raw libcurl loop",
      measured = r and format("%.2f× (medians %s µs vs %s µs%s)", r, num(v), num(raw), range_note(p)) or "n/a",
      met = r and r <= 1.15, by = r and r > 1.15 and format("%.0f%% over the limit (≈ −%s µs per call needed)",
        (r / 1.15 - 1) * 100, num(raw * (r - 1.15))) or nil }
  end
  local s3 = R.scenarios[3]
  if s3 then
    local big
    for _, t in ipairs(s3.tables) do if t.size == 10000 then big = t end end
    for _, proto in ipairs({ "HTTP/1.1", "HTTP/2 (TLS)" }) do
      -- the fastest viggle row of this protocol (the concurrency is named)
      local best
      for _, row in ipairs(big and big.rows or {}) do
        if row.await_all and row.proto == proto and med(row, "wall_s")
          and (not best or med(row, "wall_s") < med(best, "wall_s")) then best = row end
      end
      local name = format("10,000 jobs, 20 ms per answer, %s: < 1 s wall, peak RSS < 64 MiB", proto)
      if best then
        local w, rss = med(best, "wall_s"), med(best, "rss_kb") / 1024
        local by = {}
        if w >= 1 then by[#by + 1] = format("wall %.0f%% over 1 s", (w - 1) * 100) end
        if rss >= 64 then by[#by + 1] = format("RSS %.0f%% over 64 MiB", (rss / 64 - 1) * 100) end
        local measured = format("%.2f s, %.1f MiB, %s connections (fastest `await_all` row: concurrency %d)", w, rss,
          best.st.conns and format("%.0f", best.st.conns.median) or "?", best.conc)
        for _, row in ipairs(big.rows) do
          if row.tuned and row.proto == proto and med(row, "wall_s") then
            measured = measured .. format("; with `viggle.configure{max_host_connections = %d}`: %.2f s, %.1f MiB, %s"
              .. " connections", H2_HOST_CAP, med(row, "wall_s"), med(row, "rss_kb") / 1024,
              row.st.conns and format("%.0f", row.st.conns.median) or "?")
          end
        end
        T[#T + 1] = { name = name, met = w < 1 and rss < 64, by = #by > 0 and concat(by, "; ") or nil,
          measured = measured }
      else
        T[#T + 1] = { name = name, measured = "not run (the quick run stops at 1,000 jobs)", met = nil }
      end
    end
  end
  local s4 = R.scenarios[4]
  if s4 then
    local v, c = find(s4.rows, "viggle"), find(s4.rows, "curl")
    local r, p = pair_of(v, c, "mib_s")
    T[#T + 1] = { name = "Download: throughput ≥ 0.95× curl",
      measured = r and format("%.2f× (medians %s vs %s MiB/s%s)", r, num(med(v, "mib_s")), num(med(c, "mib_s")),
        range_note(p)) or "n/a",
      met = r and r >= 0.95, by = r and r < 0.95 and format("%.0f%% short", (0.95 - r) / 0.95 * 100) or nil }
    local rss = med(v, "rss_kb") and med(v, "rss_kb") / 1024
    T[#T + 1] = { name = "Download: peak RSS < 16 MiB",
      measured = rss and format("%.1f MiB", rss) or "n/a",
      met = rss and rss < 16, by = rss and rss >= 16 and format("%.0f%% over", (rss / 16 - 1) * 100) or nil }
  end
  local s5 = R.scenarios[5]
  if s5 and s5.rows then
    local vrow, crow = find(s5.rows, "viggle"), find(s5.rows, "curl")
    local v, c = med(vrow, "ms"), med(crow, "ms")
    local r, p = pair_of(vrow, crow, "ms")
    T[#T + 1] = { name = "Start-up plus one status ≤ 1.5× `curl -s`",
      measured = r and format("%.2f× (medians %.2f ms vs %.2f ms%s)", r, v, c, range_note(p)) or "n/a",
      met = r and r <= 1.5, by = r and r > 1.5 and format("%.0f%% over the limit (≈ −%.2f ms needed)",
        (r / 1.5 - 1) * 100, c * (r - 1.5)) or nil }
  end
  R.targets = T
  return T
end

-- ---------------------------------------------------------------------------
-- plots (gnuplot, PNG)

local PLOT_DIR -- set in main: a quick or partial run never replaces the committed plots

local function gnuplot(name, script)
  local gp = OUT .. "/" .. name .. ".gp"
  write_file(gp, script)
  local ok = os.execute("gnuplot " .. q(gp) .. " >" .. OUT .. "/tmp/gnuplot.txt 2>&1")
  if not ok then say("  gnuplot %s failed: %s", name, tail(read_file(OUT .. "/tmp/gnuplot.txt") or "")) end
  return ok
end

local GP_HEAD = [[
set terminal pngcairo size 1100,%d font "DejaVu Sans,11" noenhanced
set output "%s"
set border 3
set tics nomirror
set grid ytics lc rgb "#dddddd"
set key noautotitle
]]

local function plot_sequential()
  local s1, s2 = R.scenarios[1], R.scenarios[2]
  if not s1 and not s2 then return nil end
  -- one bar per client: CPU µs per call (log scale), error bars min..max
  local lines = {}
  local i = 0
  local function add(s, label)
    if not s then return end
    for _, row in ipairs(s.rows) do
      local st = row.st and row.st.cpu_us
      if st then
        local colour = row.viggle and "0xd62728" or (row.ref and "0x2ca02c" or "0x7f7f7f")
        lines[#lines + 1] = format("%d %g %g %g \"%s\" %s", i, st.median, st.min, st.max,
          (label .. row.name:gsub("`", ""):gsub(" %(.-%)", "")):gsub('"', "'"), colour)
        i = i + 1
      end
    end
    i = i + 1
  end
  add(s1, "HTTP: ")
  add(s2, "TLS: ")
  local dat = OUT .. "/sequential.dat"
  write_file(dat, concat(lines, "\n") .. "\n")
  local png = PLOT_DIR .. "/plot-sequential.png"
  gnuplot("sequential", format(GP_HEAD, 620, png) .. format([[
set title "Sequential status calls: client CPU per call\n(median; whiskers: min..max over runs; lower is better)"
set logscale x 10
set xlabel "client CPU microseconds per call (user+sys, log scale)"
set ytics scale 0
set yrange [%d:-1]
set xrange [10:*]
set style fill solid 0.85 noborder
set format x "%%g"
plot "%s" using (($2+10)/2):1:(10):2:($1-0.38):($1+0.38):6:ytic(5) with boxxyerror lc rgb variable, \
     "" using 2:1:3:4 with xerrorbars pt 0 lc rgb "black", \
     "" using ($4*1.06):1:(sprintf("%%.1f", $2)) with labels left font ",9"
]], i, dat))
  return png
end

local function plot_many()
  local s3 = R.scenarios[3]
  if not s3 then return nil end
  -- wall time against jobs: one panel per protocol, one line per client; the
  -- plain loops (HTTP/1.1) are drawn in both panels as the reference
  local series, order = {}, {}
  for _, t in ipairs(s3.tables) do
    for _, row in ipairs(t.rows) do
      local w = med(row, "wall_s")
      if w then
        if not series[row.key] then series[row.key] = {} order[#order + 1] = row end
        local lines = series[row.key]
        lines[#lines + 1] = format("%d %g %g %g", t.size, w, row.st.wall_s.min, row.st.wall_s.max)
      end
    end
  end
  local style = {
    loop_viggle = 'dt 2 lw 2 pt 7 lc rgb "#222222"', loop_requests = 'dt 3 lw 2 pt 7 lc rgb "#888888"',
    viggle_1_256 = 'lw 3 pt 7 lc rgb "#d62728"', viggle_1_1024 = 'lw 3 pt 9 lc rgb "#ff7f0e"',
    viggle_2_256 = 'lw 3 pt 7 lc rgb "#d62728"', viggle_2_1024 = 'lw 3 pt 9 lc rgb "#ff7f0e"',
    viggle_2_cap = 'lw 3 pt 11 lc rgb "#e377c2"',
    raw_1 = 'lw 2 pt 5 lc rgb "#2ca02c"', raw_2 = 'lw 2 pt 5 lc rgb "#2ca02c"',
    raw_2_cap = 'lw 2 pt 13 lc rgb "#1f77b4"', pool_1 = 'lw 2 dt 4 pt 11 lc rgb "#9467bd"',
  }
  local panels = { { "HTTP/1.1", {} }, { "HTTP/2 (TLS)", {} } }
  for k, row in ipairs(order) do
    local dat = format("%s/many-%d.dat", OUT, k)
    write_file(dat, concat(series[row.key], "\n") .. "\n")
    local label = row.name:gsub("`", ""):gsub(" one job after another", "")
    local item = format("%q using 1:2:3:4 with yerrorlines %s ps 0.9 title %q", dat,
      style[row.key] or "lw 2 pt 7", label)
    for _, panel in ipairs(panels) do
      if row.key:match("^loop") or row.proto == panel[1] then panel[2][#panel[2] + 1] = item end
    end
  end
  local body = {}
  for _, panel in ipairs(panels) do
    body[#body + 1] = format('set title "%s"\nplot %s', panel[1], concat(panel[2], ", \\\n     "))
  end
  local png = PLOT_DIR .. "/plot-many-jobs.png"
  gnuplot("many", format(GP_HEAD, 700, png) .. format([[
set multiplot layout 1,2 title "Many jobs, %g ms per answer: wall time until every job is final\n]] ..
  [[(median; whiskers: min..max; lower is better)"
set logscale xy 10
set xlabel "jobs"
set ylabel "seconds (log scale)"
set key outside below vertical Left reverse font ",9" spacing 1.05 width -8 height 1
set bmargin 12
set xrange [70:14000]
set yrange [0.01:400]
set format y "%%g"
set arrow from 70,1 to 14000,1 nohead dt 3 lc rgb "#555555"
set label "1 s: the target for 10,000 jobs" at 80,1.35 font ",9" tc rgb "#555555"
%s
unset multiplot
]], DELAY * 1000, concat(body, "\n")))
  return png
end

local function plot_download()
  local s4 = R.scenarios[4]
  if not s4 then return nil end
  local lines = {}
  for i, row in ipairs(s4.rows) do
    local a, b = row.st.mib_s, row.st.rss_kb
    if a and b then
      lines[#lines + 1] = format("%d %g %g %g %g \"%s\" %s", i - 1, a.median, a.min, a.max, b.median / 1024,
        row.name:gsub("`", ""):gsub(" %(.-%)", ""), row.viggle and "0xd62728" or (row.ref and "0x2ca02c" or "0x7f7f7f"))
    end
  end
  local dat = OUT .. "/download.dat"
  write_file(dat, concat(lines, "\n") .. "\n")
  local png = PLOT_DIR .. "/plot-download.png"
  gnuplot("download", format(GP_HEAD, 420, png) .. format([[
set multiplot layout 1,2 title "Download of %s from the mock CDN (median; whiskers: min..max over runs)"
set style fill solid 0.85 noborder
set ytics scale 0
set yrange [%d:-0.6]
set title "throughput, MiB/s (higher is better)"
set xrange [0:*]
set xtics 500
plot "%s" using ($2/2):1:($2/2):(0.38):7:ytic(6) with boxxyerror lc rgb variable, \
     "" using 2:1:3:4 with xerrorbars pt 0 lc rgb "black", \
     "" using ($4 + 30):1:(sprintf("%%.0f", $2)) with labels left font ",9"
set title "peak RSS, MiB (log scale; lower is better)"
set xtics auto
set logscale x 10
set xrange [1:20000]
set format y ""
set arrow from 16, graph 0 to 16, graph 1 nohead dt 3 lc rgb "#555555"
set label "16 MiB" at 16, graph 1.03 center font ",9" tc rgb "#555555"
plot "%s" using (sqrt($5)):1:(1):5:($1-0.38):($1+0.38):7 with boxxyerror lc rgb variable, \
     "" using ($5*1.1):1:(sprintf("%%.1f", $5)) with labels left font ",9"
unset multiplot
]], CFG.dl_size >= 2 ^ 30 and format("%g GiB", CFG.dl_size / 2 ^ 30) or format("%g MiB", CFG.dl_size / 2 ^ 20),
    #lines, dat, dat))
  return png
end

-- ---------------------------------------------------------------------------
-- README

local function md_escape(s) return (tostring(s):gsub("|", "\\|")) end

local function readme(F, T, plots)
  local L = {}
  local function w(...) L[#L + 1] = format(...) end
  w("# viggle benchmarks")
  w("")
  w("Written by `bash bench/run.sh`%s on %s, viggle %s at commit %s.",
    QUICK and " --quick (smoke run: small counts, not the figures to quote)" or "", F.date, F.viggle, F.commit)
  w("Every contender runs on the same machine in the same run, against the same local servers; each scenario")
  w("runs every contender several times, interleaved (run 1 of each, then run 2 of each, ...). A cell reads")
  w("**median (min–max)** over those runs. A ratio (× ref) compares a contender with the scenario's reference")
  w("(marked *ref*) run by run — run *i* of both ran back to back — and reads median (min–max) of those per-run")
  w("ratios; the many-jobs speed-ups compare medians.")
  w("")
  w("## Targets (issue 6)")
  w("")
  w("| target | measured | |")
  w("|---|---|---|")
  for _, t in ipairs(T) do
    local verdict = t.met == nil and "not run" or t.met and "**met**" or ("**missed**: " .. (t.by or ""))
    w("| %s | %s | %s |", md_escape(t.name), md_escape(t.measured), md_escape(verdict))
  end
  w("")
  w("## Machine")
  w("")
  w("| | |")
  w("|---|---|")
  w("| CPU | %s, %d CPUs%s |", F.cpu, F.ncpu, F.hypervisor ~= "" and (" (" .. F.hypervisor .. " guest)") or "")
  w("| memory | %s GiB |", F.mem)
  w("| kernel, OS | %s, %s |", F.kernel, F.os)
  w("| libcurl (as viggle loads it) | %s |", F.libcurl_viggle)
  w("| curl CLI | %s |", F.curl)
  w("| Lua | %s; lua-cjson %s; LuaSocket %s; LuaSec %s |", F.lua, F.cjson, F.luasocket, F.luasec)
  w("| nginx | %s (the static server and the mock) |", F.nginx)
  w("| Python | %s, requests %s |", F.python, F.requests)
  w("| tools | %s; %s |", F.hyperfine, F.gcc)
  w("| pinning | %s |", PINNED and "servers (nginx) on CPU 1, clients on CPU 0 (`taskset`)" or "none (one CPU)")
  w("")
  w("Servers: scenarios 1, 2 and 5 use a static nginx (`bench/nginx/static.conf.in`, no Lua) that answers")
  w("`GET /api/render/<id>` with `bench/status.json`: the documented status object of a complete job, every field")
  w("present (%d bytes). Scenarios 3 and 4 use the mock (`spec/mock/`), started with its TLS + HTTP/2 listener.",
    #(read_file("bench/status.json") or ""))
  w("TLS uses a throwaway CA made at start (`openssl`); every client verifies the server against it.")
  w("")

  -- scenarios 1 and 2
  for _, id in ipairs({ 1, 2 }) do
    local s = R.scenarios[id]
    if s then
      w("## %d. %s", id, s.title)
      w("")
      local ref = find(s.rows, "raw")
      w("| client | CPU µs per call | × ref | calls per second | × ref | connections |")
      w("|---|---|---|---|---|---|")
      for _, row in ipairs(s.rows) do
        if row.error and not med(row, "cpu_us") then
          w("| %s | failed: %s | | | | |", md_escape(row.name), md_escape(tail(row.error, 120)))
        else
          local name = row.name .. (row.ref and " *ref*" or "")
          if row.viggle then name = "**" .. name .. "**" end
          w("| %s | %s | %s | %s | %s | %s |", md_escape(name), cell(row.st.cpu_us), pratio(row, "cpu_us", ref),
            cell(row.st.rate, thousands), pratio(row, "rate", ref),
            row.st.conns and format("%.0f", row.st.conns.median) or "n/a")
        end
      end
      w("")
      local calls = {}
      for _, row in ipairs(s.rows) do calls[#calls + 1] = format("%s %s", row.key, thousands(row.calls)) end
      if id == 1 then
        w("*CPU µs per call*: user+sys CPU of the client process over the timed calls only (after %d warm-up",
          CFG.seq_warmup)
        w("calls on the same connection), divided by the calls: `getrusage` in C, `os.clock` in Lua (process CPU")
        w("time), `time.process_time` in Python. *calls per second*: calls ÷ wall time of the same loop, one call")
        w("after another. *connections*: TCP connections the server accepted during the run (nginx `stub_status`),")
        w("warm-up included: 1 means the client kept its connection alive. Calls per run: %s.", concat(calls, ", "))
        w("Every Lua and Python client decodes the JSON and checks `status`; the raw libcurl loop only")
        w("collects the body (it is the floor: one easy handle set up once, `curl_easy_perform` in a loop).")
        w("LuaSocket: `socket.http` cannot keep a connection alive (it sends `Connection: close`), so")
        w("`bench/clients/seq_luasocket.lua` speaks HTTP/1.1 keep-alive on a raw `socket.tcp`: it writes the")
        w("request, reads the header lines, then `Content-Length` bytes, and `cjson.decode`s them — the least a")
        w("Lua client can do. The curl CLI row is a bash loop running `curl -s -o /dev/null URL` per call; the")
        local cli = find(s.rows, "curl_cli")
        w("same loop running `/bin/true` (%s µs CPU per iteration) is measured in each run and taken off.",
          cli and cli.loop_cpu_us and num(cli.loop_cpu_us) or "n/a")
      else
        w("Same figures as scenario 1. The reference is the raw libcurl loop over HTTP/1.1 + TLS. nginx offers")
        w("HTTP/1.1 only on one TLS port and h2 on another: viggle (which asks for HTTP/2 over TLS, as libcurl's")
        w("default) is measured on both. LuaSocket uses `ssl.wrap` (LuaSec) on the keep-alive socket client;")
        w("requests uses `verify=CA`. Calls per run: %s.", concat(calls, ", "))
      end
      w("")
    end
  end
  if plots.sequential then
    w("![sequential status calls](%s)", plots.sequential:match("[^/]+$"))
    w("")
  end

  -- scenario 3
  local s3 = R.scenarios[3]
  if s3 then
    w("## 3. Many jobs: `await_all` vs a plain loop, %g ms per answer", s3.delay * 1000)
    w("")
    w("The mock makes N fresh jobs that are complete on their first poll (`statuses = {\"complete\"}`) and")
    w("waits %g ms before every answer (`m:config{delay = %g}`), standing in for a network round trip. So every",
      s3.delay * 1000, s3.delay)
    w("job needs exactly one status call, and the figure measures how fast a client gets N answers. Each run")
    w("is a fresh process (cold: no connection yet), following the ids read from a file.")
    w("")
    for _, t in ipairs(s3.tables) do
      w("### %s jobs", thousands(t.size))
      w("")
      w("| protocol | client | wall s | speed-up vs ref | CPU s | peak RSS MiB | connections | requests |")
      w("|---|---|---|---|---|---|---|---|")
      local ref
      for _, row in ipairs(t.rows) do if row.ref then ref = row end end
      for _, row in ipairs(t.rows) do
        if not row.st or not row.st.wall_s then
          w("| %s | %s | failed: %s | | | | | |", row.proto, md_escape(row.name), md_escape(tail(row.error or "no data", 120)))
        else
          local name = row.name .. (row.ref and " *ref*" or "")
          if row.viggle then name = "**" .. name .. "**" end
          if row.extrapolated then name = name .. format(" (extrapolated from %d jobs)", row.extrapolated) end
          local speed = (ref and med(ref, "wall_s")) and format("%s×", num(med(ref, "wall_s") / med(row, "wall_s"))) or "n/a"
          w("| %s | %s | %s | %s | %s | %s | %s | %s |", row.proto, md_escape(name), cell(row.st.wall_s), speed,
            cell(row.st.cpu_s), cell(row.st.rss_kb and {
              median = row.st.rss_kb.median / 1024, min = row.st.rss_kb.min / 1024, max = row.st.rss_kb.max / 1024,
              n = row.st.rss_kb.n }), row.st.conns and format("%.0f", row.st.conns.median) or "n/a",
            row.st.requests and thousands(row.st.requests.median) or "n/a")
        end
      end
      w("")
    end
    w("*wall s*: from the first request to the last job final, measured inside the client (start-up and")
    w("reading the ids not included). *CPU s*: user+sys of the client over the same span. *peak RSS*: the")
    w("client process's maximum resident set (`/usr/bin/time`, whole process). *connections* / *requests*:")
    w("distinct TCP connections and `/api` requests the mock saw (`m:connections()` and its request count):")
    w("requests = jobs means every status was fetched once. *speed-up vs ref*: the plain loop's median wall ÷")
    w("this row's. The plain loops follow one job after another (poll until final, as the API docs' example")
    w("does); for %s jobs they are measured directly, for more they are **extrapolated** linearly from a",
      thousands(CFG.loop_direct))
    w("%d-job sample per run (wall and CPU × N/%d; RSS and connections as in the sample), since 10,000 jobs",
      CFG.loop_sample, CFG.loop_sample)
    w("one after another take over 200 s. `viggle await_all` runs with `interval = 0.5` and concurrency %d", CONC_LOW)
    w("or %d (requests in flight at once); *connections* shows whether they were reused. The raw libcurl", CONC_HIGH)
    w("multi (`bench/raw_multi.c`: %d handles in", CONC_HIGH)
    w("flight, `CURLMOPT_MAXCONNECTS` = %d, no JSON decoding) shows what the mock and libcurl allow; its", CONC_HIGH)
    w("second HTTP/2 row adds `CURLMOPT_MAX_HOST_CONNECTIONS` = %d. The *worker pool* row is not an API of", H2_HOST_CAP)
    w("viggle but a few lines over its public primitives (%d tasks, each taking the next id and polling it", CONC_LOW)
    w("with `c:status`), for comparison with `await_all` at the same concurrency. The %s targets are checked on",
      "10,000-job")
    w("the fastest `await_all` row of each protocol with the default settings; the row with")
    w("`viggle.configure{max_host_connections = %d}` (a documented knob: further requests queue in libcurl", H2_HOST_CAP)
    w("until an HTTP/2 stream is free) is reported beside it.")
    w("")
  end
  if plots.many then
    w("![many jobs](%s)", plots.many:match("[^/]+$"))
    w("")
  end

  -- scenario 4
  local s4 = R.scenarios[4]
  if s4 then
    w("## 4. Download of %s", s4.size >= 2 ^ 30 and format("%g GiB", s4.size / 2 ^ 30) or format("%g MiB", s4.size / 2 ^ 20))
    w("")
    local ref = find(s4.rows, "curl")
    w("| client | MiB/s | × ref | wall s | CPU s | peak RSS MiB | md5 |")
    w("|---|---|---|---|---|---|---|")
    for _, row in ipairs(s4.rows) do
      if not med(row, "mib_s") then
        w("| %s | failed: %s | | | | | |", md_escape(row.name), md_escape(tail(row.error or "", 120)))
      else
        local name = row.name .. (row.ref and " *ref*" or "")
        if row.viggle then name = "**" .. name .. "**" end
        local rss = row.st.rss_kb
        w("| %s | %s | %s | %s | %s | %s | %s |", md_escape(name), cell(row.st.mib_s), pratio(row, "mib_s", ref),
          cell(row.st.wall_s), cell(row.st.proc_cpu),
          cell({ median = rss.median / 1024, min = rss.min / 1024, max = rss.max / 1024, n = rss.n }),
          row.md5 and "ok" or "**mismatch**")
      end
    end
    w("")
    w("`/video/big.mp4` on the mock's CDN port (nginx static file, `sendfile`), plain HTTP on loopback, written")
    w("to %s and deleted after each run. *MiB/s*: bytes ÷ the client's own transfer time (`%%{time_total}`", s4.target_dir)
    w("for curl, measured around the call for the others). *CPU s*: user+sys of the whole process. *peak")
    w("RSS*: `/usr/bin/time`. *md5*: every downloaded file is checked with `md5sum` against the served file")
    w("(`%s`) and its size; a mismatch fails the run. Untimed first: one `curl` pass (the served file into", s4.md5 or "?")
    w("the page cache) and one download by each client (first writes into fresh memory are slow on this VM).")
    w("")
  end
  if plots.download then
    w("![download](%s)", plots.download:match("[^/]+$"))
    w("")
  end

  -- scenario 5
  local s5 = R.scenarios[5]
  if s5 then
    w("## 5. Start-up: one status call as a whole process")
    w("")
    if s5.error then
      w("Failed: %s", s5.error)
    else
      local ref = find(s5.rows, "curl")
      w("| command | wall ms | × ref | user ms | sys ms |")
      w("|---|---|---|---|---|")
      for _, row in ipairs(s5.rows) do
        local name = row.name .. (row.ref and " *ref*" or "")
        if row.viggle then name = "**" .. name .. "**" end
        w("| %s | %s | %s | %s | %s |", md_escape(name), cell(row.st.ms), pratio(row, "ms", ref),
          num(row.user_ms), num(row.sys_ms))
      end
      w("")
      w("`hyperfine -N` (no shell) against the static server over plain HTTP (`VIGGLE_BASE_URL`), in %d rounds;",
        CFG.start_rounds)
      w("each round runs every command (%d warm-up runs, then %d timed runs), so a slow spell of the machine",
        CFG.start_warmup, CFG.start_runs)
      w("lands on one round of each. *wall ms*: median of the round medians (min–max of the round medians);")
      w("*user*, *sys*: hyperfine's mean CPU of the process. The Python row is for context (no target).")
    end
    w("")
  end
  local notes = read_file("bench/notes.md")
  if notes and notes:find("%S") then
    w("## Why the misses: diagnosis")
    w("")
    L[#L + 1] = trim(notes)
    w("")
  end
  w("## Running it")
  w("")
  w("```sh")
  w("bash tools/deps.sh bench     # lua-socket lua-sec python3-requests gnuplot-nox hyperfine time openssl")
  w("make bench                   # = bash bench/run.sh: about 6 minutes, writes this file and the plots")
  w("bash bench/run.sh --quick    # smoke run, under a minute: bench/out/README.quick.md")
  w("bash bench/run.sh --only 1,5 # some scenarios only: bench/out/README.partial.md")
  w("bash bench/run.sh --replot   # rewrite this file and the plots from bench/out/results.json")
  w("```")
  w("")
  w("Raw figures of the last full run: `bench/out/results.json` (not committed; quick and partial runs write")
  w("`results-quick.json`, `results-partial.json`). Clients: `bench/clients/`,")
  w("`bench/raw_curl.c`, `bench/raw_multi.c`; the harness: `bench/bench.lua`; the diagnosis above:")
  w("`bench/notes.md` (hand-written). The machine is a shared 2-CPU VM: other work on it during a run shows")
  w("as spread, which is why every figure is a median of interleaved runs.")
  return concat(L, "\n") .. "\n"
end

-- ---------------------------------------------------------------------------
-- main

local static, m

-- results.json keeps the scenarios under string keys ("1".."5"): a partial
-- run would otherwise be a sparse array, which lua-cjson refuses
local function save_results()
  local copy = {}
  for k, v in pairs(R) do copy[k] = v end
  copy.scenarios = {}
  for id, sc in pairs(R.scenarios) do copy.scenarios[tostring(id)] = sc end
  copy.only = nil
  if ONLY then
    copy.only = {}
    for n in pairs(ONLY) do copy.only[#copy.only + 1] = n end
  end
  cjson.encode_invalid_numbers(true)
  -- a quick or partial run keeps its figures apart: --replot rewrites the
  -- committed README from the last full run only
  local name = QUICK and "results-quick.json" or ONLY and "results-partial.json" or "results.json"
  write_file(OUT .. "/" .. name, cjson.encode(copy))
end

local function load_results()
  local text = assert(read_file(OUT .. "/results.json"), "no " .. OUT .. "/results.json: run the benchmarks first")
  cjson.decode_invalid_numbers(true)
  local saved = cjson.decode(text)
  R = saved
  local scenarios = {}
  for k, v in pairs(saved.scenarios or {}) do scenarios[tonumber(k)] = v end
  R.scenarios = scenarios
  QUICK, CFG, PINNED = saved.quick, saved.cfg, saved.pinned
  ONLY = nil
  if type(saved.only) == "table" then
    ONLY = {}
    for _, n in ipairs(saved.only) do ONLY[n] = true end
  end
end

local function finish(F)
  local T = targets()
  local plots = { sequential = plot_sequential(), many = plot_many(), download = plot_download() }
  local md = readme(F, T, plots)
  local dest = QUICK and (OUT .. "/README.quick.md") or (ONLY and (OUT .. "/README.partial.md")) or "bench/README.md"
  write_file(dest, md)
  return T, dest
end

local function main()
  if REPLOT then
    load_results()
    PLOT_DIR = (QUICK or ONLY) and OUT or "bench"
    local T, dest = finish(R.facts)
    say("rewrote %s and the plots from %s/results.json (%d targets)", dest, OUT, #T)
    return
  end
  PLOT_DIR = (QUICK or ONLY) and OUT or "bench"
  local t0 = socket.gettime()
  say("viggle benchmarks%s: %d CPUs%s", QUICK and " (quick)" or "", NCPU, PINNED and ", servers on CPU 1, clients on CPU 0" or "")
  local F = facts()
  R.facts = F
  if wanted(1) or wanted(2) or wanted(5) then
    static = start_static()
    say("static nginx: %s, %s (HTTP/1.1 TLS), %s (h2)", static.http, static.tls, static.h2)
  end
  if wanted(1) then scenario_seq(static, 1, false) end
  if wanted(2) then scenario_seq(static, 2, true) end
  if wanted(5) then scenario_startup(static) end
  if static then static:stop() static = nil end
  if wanted(3) or wanted(4) then
    m = start_mock()
    say("mock: %s, %s (TLS, HTTP/2), CDN %s", m.base_url, m.tls_base_url, m.cdn_base)
    if wanted(3) then scenario_many(m) end
    if wanted(4) then scenario_download(m) end
    stop_mock(m)
    m = nil
  end
  R.seconds = socket.gettime() - t0
  save_results()
  local T, dest = finish(F)
  say("\n== Summary (%.0f s; full report: %s)", R.seconds, dest)
  for _, t in ipairs(T) do
    local verdict = t.met == nil and "not run" or t.met and "MET" or ("MISSED: " .. (t.by or ""))
    say("  %-66s %s\n      %s", t.name, verdict, t.measured)
  end
end

local ok, err = xpcall(main, debug.traceback)
if static then pcall(static.stop, static) end
if m then pcall(stop_mock, m) end
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
