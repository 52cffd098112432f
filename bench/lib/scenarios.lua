-- bench/lib/scenarios.lua: the five scenarios; each runs its contenders,
-- interleaved, and stores its rows in C.R.scenarios[id].
local C = require("bench.lib.common")
local LIB = C.LIB
local PIN_CLIENT = C.PIN_CLIENT
local tail = C.tail
local CONC_HIGH = C.CONC_HIGH
local CONC_LOW = C.CONC_LOW
local DELAY = C.DELAY
local H2_HOST_CAP = C.H2_HOST_CAP
local OUT = C.OUT
local capture = C.capture
local cjson = require("cjson")
local concat = table.concat
local contender_stats = require("bench.lib.stats").contender_stats
local format = string.format
local measure = C.measure
local paired = require("bench.lib.stats").paired
local q = C.q
local read_file = C.read_file
local say = C.say
local stats = require("bench.lib.stats").stats
local track = C.track
local trim = C.trim
local untrack = C.untrack
local write_file = C.write_file
local M = {}

-- ---------------------------------------------------------------------------
-- scenarios 1 and 2: sequential status calls

local JOB = "job_7f3a9c2e1b5d4e60"

-- curl CLI: a bash loop running curl once per call; the loop's own cost is
-- measured with /bin/true in its place and taken off.
local function cli_loop_cmd(n, inner)
  return format("bash -c %s", q(format("for ((i=0;i<%d;i++)); do %s || exit 1; done", n, inner)))
end

local function seq_contenders(st, tls)
  local N, NP, W = C.cfg.seq_calls, C.cfg.seq_calls_py, C.cfg.seq_warmup
  local list = {}
  local function add(c) list[#list + 1] = c end
  if not tls then
    add({ key = "raw", name = "raw libcurl loop (C, the floor)", ref = true, calls = N,
          cmd = format("bench/out/raw_curl %s %d %d", q(st.http .. "/api/render/" .. JOB), N, W) })
    add({ key = "viggle", name = "viggle `c:status` (retries=0)", calls = N, viggle = true,
          cmd = format("lua5.4 bench/clients/seq_viggle.lua %s %s %d %d", st.http, JOB, N, W) })
    add({ key = "luasocket", name = "LuaSocket + lua-cjson (raw keep-alive socket)", calls = N,
          cmd = format("lua5.4 bench/clients/seq_luasocket.lua %s %s %d %d", st.http, JOB, N, W) })
    add({ key = "floor", name = "libcurl + lua-cjson from Lua, nothing else (viggle.core alone)", calls = N,
          cmd = format("lua5.4 bench/clients/seq_floor.lua %s %s %d %d", st.http, JOB, N, W) })
    add({ key = "requests", name = "Python requests (Session)", calls = NP,
          cmd = format("/usr/bin/python3 bench/clients/seq_requests.py %s %s %d %d", st.http, JOB, NP, math.min(W, NP)) })
    add({ key = "curl_cli", name = "curl CLI, one process per call", calls = C.cfg.seq_calls_cli, cli = true,
          cmd = cli_loop_cmd(C.cfg.seq_calls_cli, "curl -s -o /dev/null " .. q(st.http .. "/api/render/" .. JOB)),
          base = cli_loop_cmd(C.cfg.seq_calls_cli, "/bin/true") })
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
  say("\n== %d. %s (%d runs)", id, title, C.cfg.seq_runs)
  local list = seq_contenders(st, tls)
  local samples = {}
  local errors = {}
  for run = 1, C.cfg.seq_runs do
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
  C.R.scenarios[id] = { id = id, title = title, rows = rows, tls = tls }
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

-- The rows of scenario 3's tables, one table per size: the plain loops
-- (measured, or extrapolated from a sample) and then the await_all contenders.
local function many_rows(list, loops, samples, loop_samples, errors)
  local tables = {}
  for _, size in ipairs(C.cfg.many_sizes) do
    local rows = {}
    for _, c in ipairs(loops) do
      local ls = loop_samples[c.key]
      local row = { key = c.key, name = c.name, proto = "HTTP/1.1", conc = 1, ref = c.ref, error = errors[c.key] }
      if size == C.cfg.loop_direct and #ls.direct > 0 then
        row.st = contender_stats(ls.direct, { "wall_s", "cpu_s", "rss_kb", "conns", "requests" })
        row.measured = true
      elseif #ls.sample > 0 then
        local scaled = {}
        for _, r in ipairs(ls.sample) do
          scaled[#scaled + 1] = { wall_s = r.wall_s / C.cfg.loop_sample * size, cpu_s = r.cpu_s / C.cfg.loop_sample * size,
                                  rss_kb = r.rss_kb, conns = r.conns, requests = size }
        end
        row.st = contender_stats(scaled, { "wall_s", "cpu_s", "rss_kb", "conns", "requests" })
        row.extrapolated = C.cfg.loop_sample
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
  return tables
end

local function scenario_many(m)
  say("\n== 3. Many jobs, %g ms per answer (%d runs)", DELAY * 1000, C.cfg.many_runs)
  local list = many_contenders(m)
  local samples = {}   -- [key][size] = list of results
  local errors = {}
  for _, size in ipairs(C.cfg.many_sizes) do
    for run = 1, C.cfg.many_runs do
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
  for run = 1, C.cfg.many_runs do
    for _, c in ipairs(loops) do
      loop_samples[c.key] = loop_samples[c.key] or { direct = {}, sample = {} }
      for _, what in ipairs({ { "direct", C.cfg.loop_direct }, { "sample", C.cfg.loop_sample } }) do
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
  C.R.scenarios[3] = { id = 3, title = "Many jobs", delay = DELAY,
    tables = many_rows(list, loops, samples, loop_samples, errors) }
end

-- ---------------------------------------------------------------------------
-- scenario 4: download

local function dl_dir()
  -- tmpfs when it has room: the figures then measure the client, not the disk
  local avail = tonumber(trim(capture("df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}'"))) or 0
  local need = math.floor(C.cfg.dl_size / 1024 * 2.5)
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
  say("\n== 4. Download of %s (%d runs)", C.cfg.dl_size >= 2 ^ 30 and format("%g GiB", C.cfg.dl_size / 2 ^ 30)
    or format("%g MiB", C.cfg.dl_size / 2 ^ 20), C.cfg.dl_runs)
  m:reset()
  local big = m:big(C.cfg.dl_size)
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
  for run = 1, C.cfg.dl_runs do
    for _, c in ipairs(list) do
      local path = dir .. "/" .. c.key .. ".mp4"
      os.remove(path)
      local r, err = measure(c.cmd(path))
      if r then
        local size = tonumber(trim(capture("stat -c %s " .. q(path) .. " 2>/dev/null")))
        local sum = md5(path)
        md5ok[c.key] = (md5ok[c.key] ~= false) and (sum == want)
        if size ~= C.cfg.dl_size or sum ~= want then
          err = format("got %s bytes, md5 %s (want %d, %s)", tostring(size), tostring(sum), C.cfg.dl_size, want)
          r = nil
        else
          r.mib_s = C.cfg.dl_size / 2 ^ 20 / r.wall_s
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
  C.R.scenarios[4] = { id = 4, title = "Download", rows = rows, size = C.cfg.dl_size, md5 = want,
                     target_dir = dir:match("^/dev/shm") and "tmpfs (/dev/shm)" or "disk (bench/out/dl)" }
end

-- ---------------------------------------------------------------------------
-- scenario 5: start-up

local function scenario_startup(st)
  say("\n== 5. Start-up: one status call as a whole process (hyperfine, %d rounds of %d runs)", C.cfg.start_rounds,
    C.cfg.start_runs)
  local url = st.http .. "/api/render/" .. JOB
  local viggle_bin = LIB .. "/bin/viggle"
  local check = capture(format("VIGGLE_BASE_URL=%s %s status %s 2>&1", st.http, q(viggle_bin), JOB))
  if not check:find("complete", 1, true) then
    say("  bin/viggle status FAILED: %s", tail(check))
    C.R.scenarios[5] = { id = 5, title = "Start-up", error = "bin/viggle status failed: " .. tail(check) }
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
  for round = 1, C.cfg.start_rounds do
    local json = format("%s/startup-%d.json", OUT, round)
    local cmd = format("VIGGLE_BASE_URL=%s %shyperfine -N --style basic --warmup %d --runs %d --export-json %s %s "
      .. ">%s/tmp/hyperfine.txt 2>&1", st.http, PIN_CLIENT, C.cfg.start_warmup, C.cfg.start_runs, json,
      concat(parts, " "), OUT)
    if not os.execute(cmd) then
      local err = tail(read_file(OUT .. "/tmp/hyperfine.txt") or "")
      say("  hyperfine FAILED: %s", err)
      C.R.scenarios[5] = { id = 5, title = "Start-up", error = err }
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
      all = all, user_ms = p.user / C.cfg.start_rounds, sys_ms = p.sys / C.cfg.start_rounds,
      pair = paired(p.rounds, per.curl.rounds, { "ms" }) }
    say("  %-55s median %6.2f ms (rounds %.2f–%.2f; processes %.2f–%.2f), user %.2f ms, sys %.2f ms", c.name,
      rows[#rows].st.ms.median, rows[#rows].st.ms.min, rows[#rows].st.ms.max, all.min, all.max,
      rows[#rows].user_ms, rows[#rows].sys_ms)
  end
  C.R.scenarios[5] = { id = 5, title = "Start-up", rows = rows }
end

M.cli_loop_cmd = cli_loop_cmd
M.seq_contenders = seq_contenders
M.scenario_seq = scenario_seq
M.ids_file = ids_file
M.fresh_jobs = fresh_jobs
M.api_counts = api_counts
M.many_contenders = many_contenders
M.scenario_many = scenario_many
M.dl_dir = dl_dir
M.md5 = md5
M.scenario_download = scenario_download
M.scenario_startup = scenario_startup

return M
