-- Starts and stops the nginx that hosts viggle for spec/hosts/nginx_spec.lua
-- (its own nginx, apart from the mock's, so that what blocks it is only
-- viggle): nginx -p PREFIX -c PREFIX/nginx.conf from spec/hosts/nginx.conf.in.
--   local host = require("spec.hosts.nginx_host")
--   local h = assert(host.start({ mock_url = m.base_url }))
--   h.url .. "/ping"; h:get("/ping") -> body, seconds; h:stop()
local mock_server = require("spec.mock.server")

local M = {}

local HOSTS_DIR = (mock_server.dir:gsub("/spec/mock$", "/spec/hosts"))
local ROOT = (mock_server.dir:gsub("/spec/mock$", ""))
local NGINX = os.getenv("VIGGLE_MOCK_NGINX") or "nginx"
M.dir, M.root = HOSTS_DIR, ROOT




local support = require("spec.support")
local q, capture, read_file, sleep = support.q, support.capture, support.read_file, support.sleep

local function is_alive(pid)
  local stat = read_file("/proc/" .. tostring(pid) .. "/stat")
  return stat ~= nil and stat:match("%) (%a)") ~= "Z"
end

local Host = {}
Host.__index = Host

--- GET path -> body, seconds (curl's time_total), or nil, error text.
function Host:get(path, max_time)
  local out = capture("curl -s --max-time " .. (max_time or 30) .. " -w '\\n%{http_code} %{time_total}' "
    .. q(self.url .. path) .. " 2>&1")
  local body, code, t = out:match("^(.*)\n(%d+) ([%d.]+)$")
  if code ~= "200" then return nil, out end
  return body, tonumber(t)
end

--- Starts `curl URL` in the background; its answer lands in the returned file
--- (complete once `done(file)` is true).
function Host:get_bg(path, max_time)
  local out = os.tmpname()
  os.remove(out)
  -- the file appears when curl is done, answer or not (then it is empty)
  os.execute("(curl -s --max-time " .. (max_time or 30) .. " -o " .. q(out .. ".tmp") .. " " .. q(self.url .. path)
    .. "; touch " .. q(out .. ".tmp") .. "; mv " .. q(out .. ".tmp") .. " " .. q(out) .. ") >/dev/null 2>&1 &")
  return out
end

function M.done(file) return read_file(file) ~= nil end

function Host:pid()
  local s = read_file(self.prefix .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+"))
end

function Host:error_log() return read_file(self.prefix .. "/logs/error.log") or "" end

function Host:stop()
  if self.stopped then return end
  self.stopped = true
  local pid = self:pid()
  if pid and is_alive(pid) then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
      if not is_alive(pid) then break end
      sleep(0.05)
    end
    if is_alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  if self.prefix:match("^/.+/viggle%-host%.") then os.execute("rm -rf " .. q(self.prefix)) end
end

local function free_port()
  local busy = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for port, st in (read_file(f) or ""):gmatch("\n%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)") do
      if st == "0A" then busy[tonumber(port, 16)] = true end
    end
  end
  while true do
    local p = math.random(20000, 60000)
    if not busy[p] then return p end
  end
end

--- start{mock_url = ...} -> host object {url, port, prefix} | nil, err
function M.start(opts)
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  local prefix = capture("mktemp -d " .. q(tmp .. "/viggle-host.XXXXXXXX")):gsub("%s+$", "")
  if prefix == "" then return nil, "mktemp failed" end
  os.execute("mkdir -p " .. q(prefix .. "/logs") .. " " .. q(prefix .. "/tmp"))
  local seed = tonumber(capture("od -An -N4 -tu4 /dev/urandom"):match("%d+")) or os.time()
  math.randomseed(seed)
  local tpl = assert(read_file(HOSTS_DIR .. "/nginx.conf.in"))
  local is_root = capture("id -u"):match("^0%s*$") ~= nil
  local last = "no attempt"
  for _ = 1, 10 do
    local port = free_port()
    local conf = tpl:gsub("@([%u_]+)@", {
      PREFIX = prefix, PORT = tostring(port), ROOT = ROOT, HOSTS_DIR = HOSTS_DIR,
      MOCK_URL = opts.mock_url, USER_LINE = is_root and "user root;" or "",
    })
    local f = assert(io.open(prefix .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local out = capture(q(NGINX) .. " -p " .. q(prefix .. "/") .. " -c " .. q(prefix .. "/nginx.conf")
      .. " -e " .. q(prefix .. "/logs/error.log") .. " 2>&1; echo \"rc=$?\"")
    if out:match("rc=0%s*$") then
      local h = setmetatable({ url = "http://127.0.0.1:" .. port, port = port, prefix = prefix }, Host)
      for _ = 1, 200 do
        if h:get("/ping", 1) then return h end
        sleep(0.05)
      end
      local log = h:error_log()
      h:stop()
      return nil, "nginx started but /ping does not answer: " .. log
    end
    last = out
    if not out:find("in use", 1, true) then break end
  end
  os.execute("rm -rf " .. q(prefix))
  return nil, "nginx did not start: " .. last
end

return M
