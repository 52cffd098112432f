-- nginx bench (issue 11): one worker hosting viggle, against a minimal
-- cosocket client with lua-cjson doing the same work in the same worker.
--   lua5.4 bench/hosts/nginx.lua [--quick]
-- For API delays of 20 ms and 300 ms: /ping latency (p50, p99, max, from one
-- curl pinging every 10 ms) while 50 requests await a job and 2 download a
-- big file; and the throughput of status calls made from handlers (10
-- requests at once, each making sequential status calls).
-- Prints one line per row: name, then key=value pairs.
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath
local support = require("spec.support")
local mock_server = require("spec.mock.server")
local nginx_host = require("spec.hosts.nginx_host")
local core = require("viggle.core")

local now, sleep, fmt, q = core.now, core.sleep, string.format, support.q
local quick = arg[1] == "--quick"
local DL = (quick and 50 or 200) * 1024 * 1024
local AWAITS = 50

local m = assert(mock_server.start())
local h = assert(support.nginx({
  template = "bench/hosts/nginx.conf.in", name = "viggle-bench-host", ports = { "PORT" },
  vars = function()
    return { ROOT = support.root, BUILD_DIR = support.build_dir("jit"), MOCK_URL = m.base_url }
  end,
  ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.PORT .. "/ping") end,
}))
h.url = "http://127.0.0.1:" .. h.ports.PORT
m:big(DL)
local dir = support.capture("mktemp -d"):gsub("%s+$", "")

local function pct(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] or 0 end
local function row(name, kv)
  local parts = { name }
  for _, p in ipairs(kv) do parts[#parts + 1] = p[1] .. "=" .. p[2] end
  print(table.concat(parts, " "))
  io.stdout:flush()
end

-- the requests at once, from one curl process (--parallel): returns when all
-- are done. (One process, not one per request: fifty curl processes starting
-- together took the VM's two CPUs for a few hundred ms, and the pings taken
-- then measured that start, not the worker.)
local function all_at_once(urls)
  local cmd = { "curl -s --parallel --parallel-immediate --parallel-max", #urls + 1, "--max-time 120" }
  for _, u in ipairs(urls) do cmd[#cmd + 1] = q(u) .. " -o /dev/null" end
  os.execute(table.concat(cmd, " ") .. " 2>/dev/null")
end

-- bytes of a file, or 0
local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

for _, delay in ipairs({ 0.02, 0.3 }) do
  for _, client in ipairs({ "cosocket", "viggle" }) do
    m:reset()
    m:config({ delay = delay })
    local ids = m:jobs({ count = AWAITS, id = "bench_" .. client, advance = "time", step = 0.2 }) -- done at 1 s
    local urls = {}
    for i = 1, AWAITS do urls[i] = h.url .. "/await?client=" .. client .. "&interval=0.2&id=" .. ids[i] end
    for i = 1, 2 do
      urls[#urls + 1] = h.url .. "/download?client=" .. client .. "&url=" .. m.cdn_base .. "/video/big.mp4&path="
        .. dir .. "/" .. client .. i .. ".mp4"
    end
    local pinger = nginx_host.pinger(h, 0.01)
    sleep(0.2)
    local t0 = now()
    all_at_once(urls)
    local seconds = now() - t0
    sleep(0.1)
    local lat = {}
    for _, p in ipairs(pinger:stop()) do lat[#lat + 1] = p.latency end
    table.sort(lat)
    row(fmt("ping:%s:%gms", client, delay * 1000), {
      { "pings", #lat }, { "p50_ms", fmt("%.2f", pct(lat, 0.5) * 1000) }, { "p99_ms", fmt("%.2f", pct(lat, 0.99) * 1000) },
      { "max_ms", fmt("%.2f", (lat[#lat] or 0) * 1000) }, { "seconds", fmt("%.2f", seconds) },
    })
    for i = 1, 2 do -- the load really ran: both downloads whole
      local got = size_of(dir .. "/" .. client .. i .. ".mp4")
      if got ~= DL then error(fmt("%s download %d: %d of %d bytes", client, i, got, DL)) end
    end
    os.execute("rm -f " .. q(dir) .. "/*.mp4")

    local id = m:job({ id = "bench_st_" .. client })
    local per = quick and 20 or (delay < 0.1 and 100 or 10)
    urls = {}
    for i = 1, 10 do urls[i] = h.url .. "/statuses?client=" .. client .. "&n=" .. per .. "&id=" .. id end
    t0 = now()
    all_at_once(urls)
    seconds = now() - t0
    row(fmt("status:%s:%gms", client, delay * 1000), {
      { "calls", 10 * per }, { "calls_per_s", fmt("%.0f", 10 * per / seconds) }, { "seconds", fmt("%.2f", seconds) },
    })
  end
end
h:stop()
m:stop()
os.execute("rm -rf " .. q(dir))
