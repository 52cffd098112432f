--- Redis's protocol (RESP2) over an nginx cosocket: the connection
--- viggle.redis uses inside OpenResty, where a blocking hiredis call would
--- hold the whole worker while Redis answers. Same face as the C core's
--- (core.redis_connect): conn:command(...) -> reply | nil, msg, code, with a
--- nil as false, an array as a table; codes "reply", "io", "protocol".
--- A cosocket belongs to the request (or timer) that made it.
local tostring, tonumber, select, setmetatable, concat = tostring, tonumber, select, setmetatable, table.concat

local _M = {}

-- The phases where nginx's cosockets may be used.
local PHASES = { rewrite = true, access = true, content = true, timer = true, ssl_cert = true,
                 ssl_session_fetch = true, ssl_client_hello = true }

--- True inside nginx, in a phase where a cosocket can be used.
---@return boolean
function _M.usable()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and ngx.socket ~= nil and ngx.get_phase ~= nil and PHASES[ngx.get_phase()] == true
end

local Conn = {}
Conn.__index = Conn

--- Connects (cosocket): conn, or nil, msg, "io".
---@param host string
---@param port integer
---@param timeout number|nil seconds per connect, send or receive (default 5)
---@return table|nil conn
---@return string|nil msg
---@return string|nil code
function _M.connect(host, port, timeout)
  local sock = rawget(_G, "ngx").socket.tcp()
  sock:settimeout(math.floor((timeout or 5) * 1000))
  local ok, err = sock:connect(host, port)
  if not ok then return nil, tostring(err), "io" end
  return setmetatable({ sock = sock }, Conn)
end

local function lose(self, msg, code)
  self.lost = msg
  if self.sock then self.sock:close() self.sock = nil end
  return nil, msg, code or "io"
end

local read_reply
read_reply = function(self, depth)
  local line, err = self.sock:receive("*l")
  if not line then return lose(self, tostring(err)) end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then
    if depth > 0 then return rest end -- an error inside an array (EXEC)
    return nil, rest, "reply"
  end
  if kind == ":" then return tonumber(rest) end
  if kind == "$" then
    local n = tonumber(rest)
    if not n then return lose(self, "bad bulk length", "protocol") end
    if n < 0 then return false end
    local data
    data, err = self.sock:receive(n + 2)
    if not data then return lose(self, tostring(err)) end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = tonumber(rest)
    if not n then return lose(self, "bad array length", "protocol") end
    if n < 0 then return false end
    if depth >= 8 then return lose(self, "reply nested too deep", "protocol") end
    local t = {}
    for i = 1, n do
      local v, msg, code = read_reply(self, depth + 1)
      if v == nil then return nil, msg, code end
      t[i] = v
    end
    return t
  end
  return lose(self, "unexpected reply " .. line:sub(1, 20), "protocol")
end

--- Sends one command and reads its reply.
---@param ... string|number the command and its arguments
---@return any reply
---@return string|nil msg
---@return string|nil code
function Conn:command(...)
  if self.lost then return nil, self.lost, "io" end
  if not self.sock then error("redis connection is closed", 2) end
  local n = select("#", ...)
  local parts = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = tostring((select(i, ...)))
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  local ok, err = self.sock:send(concat(parts))
  if not ok then return lose(self, tostring(err)) end
  return read_reply(self, 0)
end

--- Closes the socket.
---@return nil
function Conn:close()
  if self.sock then self.sock:close() self.sock = nil end
end

return _M
