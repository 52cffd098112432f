-- bench/lib/servers.lua: the servers the contenders talk to (a static nginx
-- for scenarios 1, 2 and 5, the mock for 3 and 4), both started through
-- spec/support.lua, and the facts of the machine the report names.
local cjson = require("cjson")
local socket = require("socket")
local support = require("spec.support")
local mock = require("spec.mock.server")
local C = require("bench.lib.common")

local format, trim, capture, q = string.format, C.trim, C.capture, C.q
local M = {}

-- ---------------------------------------------------------------------------
-- the static nginx (scenarios 1, 2, 5)

local Static = setmetatable({}, { __index = support.Nginx })
Static.__index = Static

function M.start_static()
  local abs = trim(capture("pwd")) .. "/" .. C.OUT .. "/static"
  os.execute("rm -rf " .. q(abs) .. " && mkdir -p " .. q(abs .. "/html"))
  os.execute("cp bench/status.json " .. q(abs .. "/html/status.json"))
  local certs = assert(mock.make_cert(abs .. "/tls"))
  local s = assert(support.nginx({
    template = "bench/nginx/static.conf.in", prefix = abs, class = Static,
    ports = { "HTTP_PORT", "TLS_PORT", "H2_PORT" }, wrap = C.pinned and "taskset -c 1 " or nil,
    ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.HTTP_PORT .. "/api/render/job_bench") end,
  }))
  s.ca_file = certs.ca_file
  s.http = "http://127.0.0.1:" .. s.ports.HTTP_PORT
  s.tls = "https://127.0.0.1:" .. s.ports.TLS_PORT
  s.h2 = "https://127.0.0.1:" .. s.ports.H2_PORT
  C.track("static", s.nginx_pid, abs)
  return s
end

function Static:accepts()
  local s = capture("curl -s " .. self.http .. "/nginx_status")
  local accepts = s:match("\n%s*(%d+)%s+%d+%s+%d+")
  return tonumber(accepts)
end

function Static:stop()
  support.Nginx.stop(self)
  C.untrack("static")
end

-- ---------------------------------------------------------------------------
-- the mock (scenarios 3, 4)

function M.start_mock()
  local m = assert(mock.start({ tls = true }))
  C.track("mock", m:pid(), m.prefix)
  return m
end

function M.stop_mock(m)
  if m then m:stop() end
  C.untrack("mock")
end

-- ---------------------------------------------------------------------------
-- machine facts

function M.facts()
  local f = {}
  local lscpu = capture("lscpu 2>/dev/null")
  f.cpu = trim(lscpu:match("Model name:%s*([^\n]+)") or "?")
  f.ncpu = C.NCPU
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

return M
