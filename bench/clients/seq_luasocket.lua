-- Sequential status calls with LuaSocket (+ LuaSec for https) and lua-cjson.
--   lua5.4 bench/clients/seq_luasocket.lua BASE_URL JOB_ID CALLS WARMUP [CA_FILE]
--
-- socket.http cannot keep a connection alive (it sends "Connection: close"
-- and reads to EOF), so this is a minimal HTTP/1.1 keep-alive client on a raw
-- socket.tcp (wrapped by ssl.wrap for https): it sends the GET, reads the
-- status line and headers with receive("*l"), the body with
-- receive(Content-Length), and decodes it with cjson. It reconnects when the
-- server closes. This is about as little work as a Lua client can do, so it
-- is a generous stand-in for what a user would write with LuaSocket.
-- Prints calls=N cpu_s=X wall_s=Y.
local socket = require("socket")
local cjson = require("cjson")

local base, id = arg[1], arg[2]
local calls, warmup, ca_file = tonumber(arg[3]), tonumber(arg[4]), arg[5]
local scheme, host, port = base:match("^(https?)://([^:/]+):?(%d*)")
port = tonumber(port) or (scheme == "https" and 443 or 80)
local path = "/api/render/" .. id
local request = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. ":" .. port
  .. "\r\nUser-Agent: bench-luasocket\r\nAccept: application/json\r\n\r\n"

local conn
local function connect()
  local s = assert(socket.tcp())
  assert(s:connect(host, port))
  s:setoption("tcp-nodelay", true)
  if scheme == "https" then
    local ssl = require("ssl")
    s = assert(ssl.wrap(s, { mode = "client", protocol = "any", verify = "peer",
                             options = "all", cafile = ca_file }))
    s:sni(host)
    assert(s:dohandshake())
  end
  conn = s
end

local function status()
  if not conn then connect() end
  local ok, err = conn:send(request)
  if not ok then conn:close(); conn = nil; connect(); assert(conn:send(request)) end
  local line = conn:receive("*l")
  if not line then error("no status line: " .. tostring(err)) end
  local code = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local length, close
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    name = name and name:lower()
    if name == "content-length" then length = tonumber(value)
    elseif name == "connection" and value:lower() == "close" then close = true end
  end
  local body = assert(conn:receive(length))
  if close then conn:close(); conn = nil end
  if code ~= 200 then error("HTTP " .. tostring(code)) end
  return cjson.decode(body)
end

local function run(n)
  for _ = 1, n do
    local job = status()
    if job.status ~= "complete" then error("unexpected status") end
  end
end

run(warmup)
local c0, w0 = os.clock(), socket.gettime()
run(calls)
local c1, w1 = os.clock(), socket.gettime()
print(string.format("calls=%d cpu_s=%.6f wall_s=%.6f", calls, c1 - c0, w1 - w0))
