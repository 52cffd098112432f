-- bench/lib/report.lua: the targets of issue 6 and the README the run writes.
local C = require("bench.lib.common")
local tail = C.tail
local CONC_HIGH = C.CONC_HIGH
local CONC_LOW = C.CONC_LOW
local H2_HOST_CAP = C.H2_HOST_CAP
local cell = require("bench.lib.stats").cell
local concat = table.concat
local format = string.format
local num = require("bench.lib.stats").num
local pratio = require("bench.lib.stats").pratio
local read_file = C.read_file
local thousands = require("bench.lib.stats").thousands
local trim = C.trim
local M = {}

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
  local s1 = C.R.scenarios[1]
  if s1 then
    local vrow, rawrow = find(s1.rows, "viggle"), find(s1.rows, "raw")
    local v, raw = med(vrow, "cpu_us"), med(rawrow, "cpu_us")
    local r, p = pair_of(vrow, rawrow, "cpu_us")
    T[#T + 1] = { name = "Sequential status: client CPU per call ≤ 1.15× the raw libcurl loop",
      measured = r and format("%.2f× (medians %s µs vs %s µs%s)", r, num(v), num(raw), range_note(p)) or "n/a",
      met = r and r <= 1.15, by = r and r > 1.15 and format("%.0f%% over the limit (≈ −%s µs per call needed)",
        (r / 1.15 - 1) * 100, num(raw * (r - 1.15))) or nil }
    -- issue 11: at or below the LuaSocket client; the floor row says what
    -- any Lua client on libcurl + lua-cjson costs before doing anything else
    local lrow, frow = find(s1.rows, "luasocket"), find(s1.rows, "floor")
    local function ratio(a, b) -- of medians (pair_of compares with the scenario's reference only)
      local x, y = med(a, "cpu_us"), med(b, "cpu_us")
      return x and y and y ~= 0 and x / y or nil
    end
    local rl, rf, rfl = ratio(vrow, lrow), ratio(frow, rawrow), ratio(frow, lrow)
    if rl then
      T[#T + 1] = { name = "Sequential status: client CPU per call at or below the LuaSocket client",
        measured = format("%.2f× LuaSocket; the floor row (libcurl + lua-cjson from Lua, nothing else) is "
          .. "%s× raw libcurl and %s× LuaSocket", rl, rf and format("%.2f", rf) or "n/a", rfl and format("%.2f", rfl) or "n/a"),
        met = rl <= 1.0, by = rl > 1.0 and "out of reach on libcurl: see the diagnosis below" or nil }
    end
  end
  local s3 = C.R.scenarios[3]
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
  local s4 = C.R.scenarios[4]
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
  local s5 = C.R.scenarios[5]
  if s5 and s5.rows then
    local vrow, crow = find(s5.rows, "viggle"), find(s5.rows, "curl")
    local v, c = med(vrow, "ms"), med(crow, "ms")
    local r, p = pair_of(vrow, crow, "ms")
    T[#T + 1] = { name = "Start-up plus one status ≤ 1.5× `curl -s`",
      measured = r and format("%.2f× (medians %.2f ms vs %.2f ms%s)", r, v, c, range_note(p)) or "n/a",
      met = r and r <= 1.5, by = r and r > 1.5 and format("%.0f%% over the limit (≈ −%.2f ms needed)",
        (r / 1.5 - 1) * 100, c * (r - 1.5)) or nil }
  end
  C.R.targets = T
  return T
end

-- ---------------------------------------------------------------------------
-- README

local function md_escape(s) return (tostring(s):gsub("|", "\\|")) end

-- Each part of the README writes its lines through w (string.format).
local function readme_head(w, F, T)
  w("# viggle benchmarks")
  w("")
  w("Written by `bash bench/run.sh`%s on %s, viggle %s at commit %s.",
    C.quick and " --quick (smoke run: small counts, not the figures to quote)" or "", F.date, F.viggle, F.commit)
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
  w("| pinning | %s |", C.pinned and "servers (nginx) on CPU 1, clients on CPU 0 (`taskset`)" or "none (one CPU)")
  w("")
  w("Servers: scenarios 1, 2 and 5 use a static nginx (`bench/nginx/static.conf.in`, no Lua) that answers")
  w("`GET /api/render/<id>` with `bench/status.json`: the documented status object of a complete job, every field")
  w("present (%d bytes). Scenarios 3 and 4 use the mock (`spec/mock/`), started with its TLS + HTTP/2 listener.",
    #(read_file("bench/status.json") or ""))
  w("TLS uses a throwaway CA made at start (`openssl`); every client verifies the server against it.")
  w("")

end

local function readme_seq(w, plots)
  -- scenarios 1 and 2
  for _, id in ipairs({ 1, 2 }) do
    local s = C.R.scenarios[id]
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
          C.cfg.seq_warmup)
        w("calls on the same connection), divided by the calls: `getrusage` in C, `os.clock` in Lua (process CPU")
        w("time), `time.process_time` in Python. *calls per second*: calls ÷ wall time of the same loop, one call")
        w("after another. *connections*: TCP connections the server accepted during the run (nginx `stub_status`),")
        w("warm-up included: 1 means the client kept its connection alive. Calls per run: %s.", concat(calls, ", "))
        w("Every Lua and Python client decodes the JSON and checks `status`; the raw libcurl loop only")
        w("collects the body (it is the floor: one easy handle set up once, `curl_easy_perform` in a loop).")
        w("LuaSocket: `socket.http` cannot keep a connection alive (it sends `Connection: close`), so")
        w("`bench/clients/seq_luasocket.lua` speaks HTTP/1.1 keep-alive on a raw `socket.tcp`: it writes the")
        w("request, reads the header lines, then `Content-Length` bytes, and `cjson.decode`s them — the least a")
        w("Lua client can do. The floor row (`bench/clients/seq_floor.lua`) is viggle's C core alone: one request")
        w("handle, no headers, `r:perform()` and `cjson.decode` — what any Lua client on libcurl and lua-cjson")
        w("costs before it checks or names anything. The curl CLI row is a bash loop running")
        w("`curl -s -o /dev/null URL` per call; the")
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

end

local function readme_many(w, plots)
  -- scenario 3
  local s3 = C.R.scenarios[3]
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
      thousands(C.cfg.loop_direct))
    w("%d-job sample per run (wall and CPU × N/%d; RSS and connections as in the sample), since 10,000 jobs",
      C.cfg.loop_sample, C.cfg.loop_sample)
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

end

local function readme_download(w, plots)
  -- scenario 4
  local s4 = C.R.scenarios[4]
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

end

local function readme_startup(w)
  -- scenario 5
  local s5 = C.R.scenarios[5]
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
        C.cfg.start_rounds)
      w("each round runs every command (%d warm-up runs, then %d timed runs), so a slow spell of the machine",
        C.cfg.start_warmup, C.cfg.start_runs)
      w("lands on one round of each. *wall ms*: median of the round medians (min–max of the round medians);")
      w("*user*, *sys*: hyperfine's mean CPU of the process. The Python row is for context (no target).")
    end
    w("")
  end
end

local function readme_tail(w, L)
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
end

local function readme(F, T, plots)
  local L = {}
  local function w(...) L[#L + 1] = format(...) end
  readme_head(w, F, T)
  readme_seq(w, plots)
  readme_many(w, plots)
  readme_download(w, plots)
  readme_startup(w)
  readme_tail(w, L)
  return concat(L, "\n") .. "\n"
end

M.find = find
M.med = med
M.pair_of = pair_of
M.range_note = range_note
M.targets = targets
M.md_escape = md_escape
M.readme = readme

return M
