-- Launcher and control client for the mock Viggle Render API (spec/mock/).
--
-- As a module (any of Lua 5.1-5.4 / LuaJIT; needs only the stdlib, lua-cjson,
-- the `nginx` and `curl` commands):
--   local mock = require("spec.mock.server")
--   local m = assert(mock.start())          -- nginx on 127.0.0.1, random ports
--   m.base_url, m.cdn_base, m.port, m.cdn_port, m.prefix
--   local id = m:job({ outcome = "failed" })
--   ...
--   m:stop()
--
-- As a script (see README.md):
--   lua5.4 spec/mock/server.lua run   [--port N] [--cdn-port N]
--   lua5.4 spec/mock/server.lua start [--port N] [--cdn-port N] [--state FILE]
--   lua5.4 spec/mock/server.lua stop  [--state FILE]
local cjson = require("cjson")

local M = {}

-- This file's directory, absolute: the script runs from anywhere.
local function mock_dir()
  local src = debug.getinfo(1, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "spec/mock/server.lua"
  local dir = path:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    dir = p:read("*l") .. "/" .. dir
    p:close()
  end
  return (dir:gsub("/%./", "/"):gsub("/%.$", ""):gsub("//+", "/"))
end

M.dir = mock_dir()
-- spec/support.lua, found from here (two levels up is the checkout)
package.path = M.dir:gsub("/spec/mock$", "") .. "/?.lua;" .. package.path
local support = require("spec.support")
local q, capture, read_file, write_file = support.q, support.capture, support.read_file, support.write_file

---------------------------------------------------------------------------
-- the object

local Mock = setmetatable({}, { __index = support.Nginx })
Mock.__index = Mock

-- lua-cjson decodes every number as a float on Lua 5.3+: give integral ones back
-- as integers so that 3 prints as "3", not "3.0"
local tointeger = math.tointeger
local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(x) == "number" then
        local i = tointeger(x)
        if i then v[k] = i end
      elseif type(x) == "table" then
        integers(x)
      end
    end
  end
  return v
end
if not tointeger then integers = function(v) return v end end

-- control(method, path, tbl) -> decoded JSON, HTTP status | nil, err, status
-- tbl (optional) is sent as a JSON body.
function Mock:control(method, path, tbl)
  self._n = (self._n or 0) + 1
  local base = self.prefix .. "/ctl/" .. self._n
  local out = base .. ".out"
  local cmd = "curl -sS --max-time 120 -X " .. q(method) .. " -o " .. q(out) .. " -w '%{http_code}'"
  local body_file
  if tbl ~= nil then
    body_file = base .. ".json"
    write_file(body_file, cjson.encode(tbl))
    cmd = cmd .. " -H 'Content-Type: application/json' --data-binary @" .. q(body_file)
  end
  cmd = cmd .. " " .. q(self.base_url .. path) .. " 2>&1"
  local code_text = capture(cmd)
  local body = read_file(out) or ""
  os.remove(out)
  if body_file then os.remove(body_file) end
  local status = tonumber(code_text:match("(%d%d%d)%s*$"))
  if not status or status == 0 then
    return nil, "mock control " .. method .. " " .. path .. ": " .. code_text
  end
  local ok, decoded = pcall(cjson.decode, body)
  if status < 200 or status > 299 then
    return nil, "mock control " .. method .. " " .. path .. ": HTTP " .. status .. ": " .. body, status
  end
  if not ok then
    return nil, "mock control " .. method .. " " .. path .. ": bad JSON: " .. body, status
  end
  return integers(decoded), status
end

local function must(self, method, path, tbl)
  local v, err = self:control(method, path, tbl)
  if v == nil then error(err, 3) end
  return v
end

-- reset(): forget jobs, faults, the log and config
function Mock:reset()
  must(self, "POST", "/_mock/reset", {})
  return true
end

-- job(opts) -> id; opts: id, outcome, advance, step, transparent, mode,
-- error_code, error_message, statuses (see README.md)
function Mock:job(opts)
  local r = must(self, "POST", "/_mock/jobs", opts or {})
  return r.ids[1]
end

-- jobs(opts) -> list of ids (opts.count of them; default 1)
function Mock:jobs(opts)
  local r = must(self, "POST", "/_mock/jobs", opts or {})
  return r.ids
end

-- job_state(id) -> {job=, stage=, polls=, view=} without advancing the job
function Mock:job_state(id)
  return must(self, "GET", "/_mock/jobs/" .. id)
end

-- character(opts) / scene(opts) -> id of an asset made at once; opts: id,
-- name, outcome (ready|failed|stuck), advance (poll|time), step,
-- error_code, error_message, segments (see README.md)
function Mock:character(opts)
  return must(self, "POST", "/_mock/characters", opts or {}).ids[1]
end
function Mock:scene(opts)
  return must(self, "POST", "/_mock/scenes", opts or {}).ids[1]
end

-- asset_state(kind, id) -> {asset=, stage=, polls=, view=} without advancing it
-- (kind: "characters" or "scenes")
function Mock:asset_state(kind, id)
  return must(self, "GET", "/_mock/" .. kind .. "/" .. id)
end

-- fault(opts): queue one fault (match, method, kind, times, ...)
function Mock:fault(opts)
  return must(self, "POST", "/_mock/faults", opts)
end

-- faults() -> list of the faults still queued
function Mock:faults()
  return must(self, "GET", "/_mock/faults").faults
end

-- config(opts) -> the whole config after merging opts (nil values reset keys)
function Mock:config(opts)
  return must(self, "POST", "/_mock/config", opts or {})
end

-- log([since]) -> list of request records (seq > since)
function Mock:log(since)
  local path = "/_mock/log"
  if since then path = path .. "?since=" .. tonumber(since) end
  return must(self, "GET", path).requests
end

-- connections([server]) -> distinct connection ids seen in the log ("api" by default)
function Mock:connections(server)
  local r = must(self, "GET", "/_mock/connections")
  return r[server or "api"].connections
end

-- posts() -> {made = N, counts = {[md5 of the uploaded driving video (else image)] = renders made}}
function Mock:posts()
  return must(self, "GET", "/_mock/posts")
end

function Mock:url(path) return self.base_url .. (path or "") end
function Mock:cdn_url(path) return self.cdn_base .. (path or "") end

-- big(size) -> path of /video/big.mp4 on disk after making it `size` bytes
function Mock:big(size, sparse)
  local r = must(self, "POST", "/_mock/config", { big_size = size or true, big_sparse = sparse or nil })
  return r.big_path
end

---------------------------------------------------------------------------
-- TLS

-- make_cert(dir) -> {ca_file=, cert=, key=} | nil, err: a throwaway CA and a
-- server certificate it signs, for 127.0.0.1 and localhost (openssl CLI).
-- Clients trust ca_file (libcurl CAINFO, requests verify=, LuaSec cafile).
function M.make_cert(dir)
  os.execute("mkdir -p " .. q(dir))
  local ca_key, ca, key, csr, cert = dir .. "/ca.key", dir .. "/ca.pem", dir .. "/server.key",
    dir .. "/server.csr", dir .. "/server.pem"
  local ext = dir .. "/server.ext"
  write_file(ext, "basicConstraints=critical,CA:FALSE\n"
    .. "keyUsage=critical,digitalSignature,keyEncipherment\n"
    .. "extendedKeyUsage=serverAuth\n"
    .. "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  local log = dir .. "/openssl.log"
  local steps = {
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30"
      .. " -subj '/CN=viggle mock CA' -addext 'basicConstraints=critical,CA:TRUE'"
      .. " -addext 'keyUsage=critical,keyCertSign,cRLSign'"
      .. " -keyout " .. q(ca_key) .. " -out " .. q(ca),
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      .. " -subj '/CN=127.0.0.1' -keyout " .. q(key) .. " -out " .. q(csr),
    "openssl x509 -req -in " .. q(csr) .. " -CA " .. q(ca) .. " -CAkey " .. q(ca_key)
      .. " -CAcreateserial -days 30 -extfile " .. q(ext) .. " -out " .. q(cert),
  }
  for _, cmd in ipairs(steps) do
    if not support.run_ok(cmd .. " >>" .. q(log) .. " 2>&1") then
      return nil, "mock: openssl failed: " .. (read_file(log) or cmd)
    end
  end
  return { ca_file = ca, cert = cert, key = key }
end

---------------------------------------------------------------------------
-- starting

-- start(opts) -> mock object | nil, err
-- opts: port, cdn_port (fixed ports; otherwise random in 20000-60000, retried
-- on bind failure), prefix (directory to use instead of a fresh temp one),
-- keep (do not remove PREFIX on stop), daemon (default true),
-- tls (true: the API also listens with TLS and HTTP/2 on m.tls_port, see
-- m.tls_base_url and m.ca_file), tls_port (fixed port for it; implies tls)
function M.start(opts)
  opts = opts or {}
  local prefix = opts.prefix or support.tempdir("viggle-mock")
  if not prefix then return nil, "mock: mktemp failed" end
  os.execute("mkdir -p " .. q(prefix .. "/cdn/video") .. " " .. q(prefix .. "/ctl"))
  local tls = opts.tls or opts.tls_port
  local certs, cerr
  if tls then
    certs, cerr = M.make_cert(prefix .. "/tls")
    if not certs then
      if not opts.prefix then os.execute("rm -rf " .. q(prefix)) end
      return nil, cerr
    end
  end
  local m, err = support.nginx({
    template = M.dir .. "/nginx.conf.in", prefix = prefix, keep = opts.keep, class = Mock,
    ports = tls and { "PORT", "CDN_PORT", "TLS_PORT" } or { "PORT", "CDN_PORT" },
    fixed = { PORT = opts.port, CDN_PORT = opts.cdn_port, TLS_PORT = opts.tls_port },
    vars = function(p)
      return { MOCK_DIR = M.dir, DAEMON = (opts.daemon == false) and "off" or "on",
        API_TLS = tls and table.concat({
          "listen 127.0.0.1:" .. p.TLS_PORT .. " ssl http2;",
          "ssl_certificate " .. certs.cert .. ";",
          "ssl_certificate_key " .. certs.key .. ";",
        }, "\n        ") or "# no TLS listener (start with tls = true)" }
    end,
    ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.PORT .. "/_mock/ping") end,
  })
  if not m then
    if not opts.prefix then os.execute("rm -rf " .. q(prefix)) end
    return nil, "mock: " .. err
  end
  local p = m.ports
  m.port, m.cdn_port, m.tls_port = p.PORT, p.CDN_PORT, p.TLS_PORT
  m.base_url, m.cdn_base = "http://127.0.0.1:" .. p.PORT, "http://127.0.0.1:" .. p.CDN_PORT
  m.tls_base_url = p.TLS_PORT and ("https://127.0.0.1:" .. p.TLS_PORT) or nil
  m.ca_file = certs and certs.ca_file or nil
  return m
end

-- attach(state_file | {base_url=, cdn_base=, prefix=}) -> object that talks to a
-- mock started elsewhere (`server.lua start`); its stop() leaves nginx running.
function M.attach(src)
  local t = src
  if type(src) == "string" then
    local text = read_file(src)
    if not text then return nil, "mock: no state file " .. src end
    t = {}
    for k, v in text:gmatch("([%w_]+)=([^\n]*)") do t[k] = v end
    t = { base_url = t.VIGGLE_BASE_URL, cdn_base = t.VIGGLE_CDN_BASE, prefix = t.VIGGLE_MOCK_PREFIX,
          tls_base_url = t.VIGGLE_MOCK_TLS_URL, ca_file = t.VIGGLE_MOCK_CA_FILE }
  end
  if not t.base_url then return nil, "mock: attach needs base_url" end
  local m = setmetatable({
    base_url = t.base_url, cdn_base = t.cdn_base, prefix = t.prefix,
    tls_base_url = t.tls_base_url, ca_file = t.ca_file,
    tls_port = t.tls_base_url and tonumber(t.tls_base_url:match(":(%d+)$")),
    port = tonumber(t.base_url:match(":(%d+)$")),
    cdn_port = t.cdn_base and tonumber(t.cdn_base:match(":(%d+)$")),
    owned = false,
  }, Mock)
  m.prefix = m.prefix or support.tempdir("viggle-mock-client")
  os.execute("mkdir -p " .. q(m.prefix .. "/ctl"))
  return m
end

---------------------------------------------------------------------------
-- script mode

local function env_lines(m)
  local lines = {
    "VIGGLE_BASE_URL=" .. m.base_url,
    "VIGGLE_CDN_BASE=" .. m.cdn_base,
    "VIGGLE_MOCK_PREFIX=" .. m.prefix,
    "VIGGLE_MOCK_PID=" .. tostring(m:pid() or ""),
  }
  if m.tls_base_url then
    lines[#lines + 1] = "VIGGLE_MOCK_TLS_URL=" .. m.tls_base_url
    lines[#lines + 1] = "VIGGLE_MOCK_CA_FILE=" .. m.ca_file
  end
  lines[#lines + 1] = ""
  return table.concat(lines, "\n")
end

local function parse_args(argv)
  local o = { cmd = argv[1] }
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--port" then o.port = tonumber(argv[i + 1]); i = i + 2
    elseif a == "--cdn-port" then o.cdn_port = tonumber(argv[i + 1]); i = i + 2
    elseif a == "--state" then o.state = argv[i + 1]; i = i + 2
    elseif a == "--tls" then o.tls = true; i = i + 1
    else
      io.stderr:write("unknown argument: " .. tostring(a) .. "\n")
      os.exit(2)
    end
  end
  return o
end

local USAGE = [[
usage: lua spec/mock/server.lua run   [--port N] [--cdn-port N] [--tls]
       lua spec/mock/server.lua start [--port N] [--cdn-port N] [--tls] [--state FILE]
       lua spec/mock/server.lua stop  [--state FILE]
run:   start the mock, print VIGGLE_BASE_URL=... and stay until Ctrl-C/SIGTERM.
start: start it in the background and write the VIGGLE_* lines to FILE
       (default spec/mock/run/mock.env); stop: stop that one and remove FILE.
]]

local function main(argv)
  local o = parse_args(argv)
  local state = o.state or (M.dir .. "/run/mock.env")
  if o.cmd == "run" then
    local m, err = M.start({ port = o.port, cdn_port = o.cdn_port, tls = o.tls })
    if not m then io.stderr:write(err, "\n"); os.exit(1) end
    io.stdout:write(env_lines(m))
    io.stdout:flush()
    -- Plain Lua cannot catch signals, so a shell waits instead: it stops on
    -- INT/TERM/HUP, when nginx dies, or when this Lua process goes away (its
    -- parent changes). Either side then stops nginx and removes PREFIX.
    local pid = m:pid()
    local script = "orig=$PPID; "
      .. "alive() { kill -0 $1 2>/dev/null || return 1; read -r st < /proc/$1/stat || return 0; "
      .. "case \"$st\" in *') Z '*) return 1;; esac; return 0; }; "
      .. "cleanup() { kill -TERM " .. pid .. " 2>/dev/null; n=0; "
      .. "while alive " .. pid .. " && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; "
      .. "rm -rf " .. q(m.prefix) .. "; exit 0; }; "
      .. "trap cleanup INT TERM HUP; "
      .. "while alive " .. pid .. "; do "
      .. "read -r _ _ _ pp _ < /proc/$$/stat; [ \"$pp\" = \"$orig\" ] || cleanup; "
      .. "sleep 0.5; done; cleanup"
    os.execute(script)
    m:stop()
    os.exit(0)
  elseif o.cmd == "start" then
    local m, err = M.start({ port = o.port, cdn_port = o.cdn_port, tls = o.tls })
    if not m then io.stderr:write(err, "\n"); os.exit(1) end
    os.execute("mkdir -p " .. q(state:match("^(.*)/[^/]*$") or "."))
    write_file(state, env_lines(m))
    io.stdout:write(env_lines(m))
    os.exit(0)
  elseif o.cmd == "stop" then
    local text = read_file(state)
    if not text then io.stderr:write("no state file " .. state .. "\n"); os.exit(1) end
    local pid = tonumber(text:match("VIGGLE_MOCK_PID=(%d+)"))
    local prefix = text:match("VIGGLE_MOCK_PREFIX=([^\n]+)")
    -- only kill the pid if it still is our nginx (pids get reused)
    local cmdline = pid and read_file("/proc/" .. pid .. "/cmdline") or ""
    if pid and cmdline:find("nginx", 1, true) then
      local m = setmetatable({ prefix = prefix, owned = true, nginx_pid = pid }, Mock)
      m:stop()
    elseif prefix and prefix:match("^/.+/viggle%-mock%.") then
      os.execute("rm -rf " .. q(prefix))
    end
    os.remove(state)
    os.exit(0)
  else
    io.stderr:write(USAGE)
    os.exit(o.cmd and 2 or 0)
  end
end

-- run main() only when this file is the script (not when required)
if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then
  main(arg)
end

return M
