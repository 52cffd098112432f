-- Upload bench (issue 11): one render upload of a big driving video, viggle
-- (client:render, blocking) against `curl -F`, to a sink (bench/hosts/
-- nginx.conf.in's /api/render: reads and drops the body; the mock's parser
-- is slower than either client): MiB/s and peak RSS (GNU time's %M) of each
-- client process.
--   lua5.4 bench/hosts/upload.lua [MB] [RUNS]
package.path = "./?.lua;./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./build/5.4/?.so;" .. package.cpath
local support = require("spec.support")
local mock_server = require("spec.mock.server")

local fmt, q = string.format, support.q
local MB = tonumber(arg[1]) or 500
local RUNS = tonumber(arg[2]) or 3
local SIZE = MB * 1024 * 1024
local m = assert(support.nginx({
  template = "bench/hosts/nginx.conf.in", name = "viggle-bench-sink", ports = { "PORT" },
  vars = function() return { ROOT = support.root, BUILD_DIR = support.build_dir("jit"), MOCK_URL = "" } end,
  ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.PORT .. "/ping") end,
}))
m.base_url = "http://127.0.0.1:" .. m.ports.PORT
local dir = support.capture("mktemp -d"):gsub("%s+$", "")
local video = dir .. "/dance.mp4"
os.execute("head -c " .. SIZE .. " /dev/urandom > " .. q(video))
local png = mock_server.dir .. "/files/character.png"

local viggle_cmd = "lua5.4 -e " .. q(table.concat({
  "package.path='./lua/?.lua;./lua/?/init.lua;'..package.path",
  "package.cpath='./build/5.4/?.so;'..package.cpath",
  "local c=assert(require('viggle').new({base_url=" .. fmt("%q", m.base_url) .. ",api_key='sk-test-valid'}))",
  "assert(c:render({ref_image=" .. fmt("%q", png) .. ",driving_video=" .. fmt("%q", video) .. "}))",
}, ";"))
local curl_cmd = "curl -s -o /dev/null -H 'Authorization: Bearer sk-test-valid' -F ref_image=@" .. q(png)
  .. " -F driving_video=@" .. q(video) .. " " .. q(m.base_url .. "/api/render")

local function measure(cmd)
  local out = support.capture("/usr/bin/time -f 'TIME %e %M' sh -c " .. q(cmd) .. " 2>&1")
  local secs, kib = out:match("TIME ([%d.]+) (%d+)")
  return tonumber(secs), tonumber(kib)
end

-- interleaved: run i of curl, then run i of viggle; the best of each
local contenders = { { "curl -F", curl_cmd }, { "viggle", viggle_cmd } }
local best, rss = {}, {}
for _ = 1, RUNS do
  for i, c in ipairs(contenders) do
    local s, k = measure(c[2])
    assert(s, c[1] .. " failed")
    best[i] = math.min(best[i] or math.huge, s)
    rss[i] = math.max(rss[i] or 0, k)
  end
end
for i, c in ipairs(contenders) do
  print(fmt("upload:%s mb=%d mibs=%.0f peak_rss_mib=%.1f best_s=%.2f", c[1]:gsub(" ", ""), MB, MB / best[i],
    rss[i] / 1024, best[i]))
end
m:stop()
os.execute("rm -rf " .. q(dir))
