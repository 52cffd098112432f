-- Starts and stops the nginx that hosts viggle for spec/hosts/nginx_spec.lua
-- (its own nginx, apart from the mock's, so that what blocks it is only
-- viggle): nginx -p PREFIX -c PREFIX/nginx.conf from spec/hosts/nginx.conf.in.
--   local host = require("spec.hosts.nginx_host")
--   local h = assert(host.start({ mock_url = m.base_url }))
--   h.url .. "/ping"; h:get("/ping") -> body, seconds; h:stop()
local support = require("spec.support")
local q, capture, read_file = support.q, support.capture, support.read_file

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
