-- Starts and stops the nginx that hosts viggle for spec/hosts/nginx_spec.lua
-- (its own nginx, apart from the mock's, so that what blocks it is only
-- viggle): nginx -p PREFIX -c PREFIX/nginx.conf from spec/hosts/nginx.conf.in.
--   local host = require("spec.hosts.nginx_host")
--   local h = assert(host.start({ mock_url = m.base_url }))
--   h.url .. "/ping"; h:get("/ping") -> body, seconds; h:stop()
local support = require("spec.support")
local q, capture, read_file, sleep = support.q, support.capture, support.read_file, support.sleep

local M = {}

M.root = support.root
M.dir = support.root .. "/spec/hosts"

local Host = setmetatable({}, { __index = support.Nginx })
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

--- The answer in a file of get_bg (removed), or nil when empty.
function M.read(file)
  local text = read_file(file)
  os.remove(file)
  if text == nil or text == "" then return nil end
  return text
end

--- GET /ping every `every` seconds from one curl process (in the background)
--- until :stop(), which returns the pings {latency (seconds), handled (the
--- handler's core.now()), pid}.
function M.pinger(h, every)
  local out = os.tmpname()
  local n = math.floor(120 / every)
  local pid = capture("curl -s --rate " .. math.floor(1 / every + 0.5) .. "/s -w 'PING %{http_code} %{time_total}\\n' "
    .. q(h.url .. "/ping?n=[1-" .. n .. "]") .. " > " .. q(out) .. " 2>/dev/null & echo $!"):match("%d+")
  return { stop = function()
    os.execute("kill " .. pid .. " 2>/dev/null")
    sleep(0.05)
    local pings = {}
    for body, code, t in (read_file(out) or ""):gmatch("([^\n]*)\nPING (%d+) ([%d.]+)") do
      if code == "200" then
        pings[#pings + 1] = { latency = tonumber(t), handled = tonumber(body:match('"t":([%d.]+)')),
                              pid = tonumber(body:match('"pid":(%d+)')) }
      end
    end
    os.remove(out)
    return pings
  end }
end


--- start{mock_url = ...} -> host object {url, port, prefix} | nil, err
function M.start(opts)
  local h, err = support.nginx({
    template = M.dir .. "/nginx.conf.in", name = "viggle-host", class = Host, ports = { "PORT" },
    vars = function()
      return { ROOT = M.root, HOSTS_DIR = M.dir, BUILD_DIR = support.build_dir("jit"), MOCK_URL = opts.mock_url }
    end,
    ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.PORT .. "/ping") end,
  })
  if not h then return nil, err end
  h.port = h.ports.PORT
  h.url = "http://127.0.0.1:" .. h.port
  return h
end

return M
