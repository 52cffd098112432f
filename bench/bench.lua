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
-- The parts, one concern each, under bench/lib/: common (options, results,
-- running a measured process), stats, servers, scenarios, plots, report.

local cjson = require("cjson")
local socket = require("socket")
local C = require("bench.lib.common")

local servers = require("bench.lib.servers")
local scenarios = require("bench.lib.scenarios")
local plots = require("bench.lib.plots")
local report = require("bench.lib.report")
local hosts_section = require("bench.lib.hosts_section")
local OUT, say, read_file, write_file, wanted = C.OUT, C.say, C.read_file, C.write_file, C.wanted

-- ---------------------------------------------------------------------------
-- main

local static, m

-- results.json keeps the scenarios under string keys ("1".."5"): a partial
-- run would otherwise be a sparse array, which lua-cjson refuses
local function save_results()
  local copy = {}
  for k, v in pairs(C.R) do copy[k] = v end
  copy.scenarios = {}
  for id, sc in pairs(C.R.scenarios) do copy.scenarios[tostring(id)] = sc end
  copy.only = nil
  if C.only then
    copy.only = {}
    for n in pairs(C.only) do copy.only[#copy.only + 1] = n end
  end
  cjson.encode_invalid_numbers(true)
  -- a quick or partial run keeps its figures apart: --replot rewrites the
  -- committed README from the last full run only
  local name = C.quick and "results-quick.json" or C.only and "results-partial.json" or "results.json"
  write_file(OUT .. "/" .. name, cjson.encode(copy))
end

local function load_results()
  local text = assert(read_file(OUT .. "/results.json"), "no " .. OUT .. "/results.json: run the benchmarks first")
  cjson.decode_invalid_numbers(true)
  local saved = cjson.decode(text)
  C.R = saved
  local by_id = {}
  for k, v in pairs(saved.scenarios or {}) do by_id[tonumber(k)] = v end
  C.R.scenarios = by_id
  C.quick, C.cfg, C.pinned = saved.quick, saved.cfg, saved.pinned
  C.only = nil
  if type(saved.only) == "table" then
    C.only = {}
    for _, n in ipairs(saved.only) do C.only[n] = true end
  end
end

local function finish(F)
  local T = report.targets()
  local figs = { sequential = plots.plot_sequential(), many = plots.plot_many(), download = plots.plot_download() }
  local md = report.readme(F, T, figs)
  local dest = C.quick and (OUT .. "/README.quick.md") or (C.only and (OUT .. "/README.partial.md")) or "bench/README.md"
  -- the hosts section (bench/hosts/run.sh writes it) is kept
  local hosts = hosts_section.get(read_file(dest) or "")
  if hosts then md = hosts_section.put(md, hosts) end
  write_file(dest, md)
  return T, dest
end

local function main()
  if C.replot then
    load_results()
    C.plot_dir = (C.quick or C.only) and OUT or "bench"
    local T, dest = finish(C.R.facts)
    say("rewrote %s and the plots from %s/results.json (%d targets)", dest, OUT, #T)
    return
  end
  C.plot_dir = (C.quick or C.only) and OUT or "bench"
  local t0 = socket.gettime()
  say("viggle benchmarks%s: %d CPUs%s", C.quick and " (quick)" or "", C.NCPU,
    C.pinned and ", servers on CPU 1, clients on CPU 0" or "")
  local F = servers.facts()
  C.R.facts = F
  if wanted(1) or wanted(2) or wanted(5) then
    static = servers.start_static()
    say("static nginx: %s, %s (HTTP/1.1 TLS), %s (h2)", static.http, static.tls, static.h2)
  end
  if wanted(1) then scenarios.scenario_seq(static, 1, false) end
  if wanted(2) then scenarios.scenario_seq(static, 2, true) end
  if wanted(5) then scenarios.scenario_startup(static) end
  if static then static:stop() static = nil end
  if wanted(3) or wanted(4) then
    m = servers.start_mock()
    say("mock: %s, %s (TLS, HTTP/2), CDN %s", m.base_url, m.tls_base_url, m.cdn_base)
    if wanted(3) then scenarios.scenario_many(m) end
    if wanted(4) then scenarios.scenario_download(m) end
    servers.stop_mock(m)
    m = nil
  end
  C.R.seconds = socket.gettime() - t0
  save_results()
  local T, dest = finish(F)
  say("\n== Summary (%.0f s; full report: %s)", C.R.seconds, dest)
  for _, t in ipairs(T) do
    local verdict = t.met == nil and "not run" or t.met and "MET" or ("MISSED: " .. (t.by or ""))
    say("  %-66s %s\n      %s", t.name, verdict, t.measured)
  end
end

local ok, err = xpcall(main, debug.traceback)
if static then pcall(static.stop, static) end
if m then pcall(servers.stop_mock, m) end
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
