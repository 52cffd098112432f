-- The least an OpenResty user could write to poll the API with cosockets:
-- HTTP/1.1 keep-alive GET over ngx.socket.tcp, the body decoded with
-- lua-cjson; and a download streamed to a file. (The LuaSocket row of bench/
-- for nginx.) No chunked encoding, no TLS, no redirects: the mock needs none.
local cjson = require("cjson.safe")
local ngx = ngx -- luacheck: ignore 113

local _M = {}

local function connect(url)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(.*)$")
  local sock = ngx.socket.tcp()
  sock:settimeout(30000)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then return nil, err end
  return sock, path ~= "" and path or "/", host .. ":" .. port
end

-- GET url: status, headers (lowercase), and the socket positioned at the body.
local function get(url)
  local sock, path, hostport = connect(url)
  if not sock then return nil, path end
  local ok, err = sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " .. hostport .. "\r\nAccept: application/json\r\n\r\n")
  if not ok then return nil, err end
  local line
  line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  while true do
    line, err = sock:receive("*l")
    if not line then return nil, err end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  return sock, status, headers
end

--- GET url -> decoded JSON, or nil, err.
function _M.json(url)
  local sock, status, headers = get(url)
  if not sock then return nil, status end
  local body, err = sock:receive(tonumber(headers["content-length"]) or 0)
  if not body then return nil, err end
  sock:setkeepalive(60000, 256)
  if status ~= 200 then return nil, "HTTP " .. status end
  return cjson.decode(body)
end

--- GET url into path -> bytes, or nil, err.
function _M.download(url, path)
  local sock, status, headers = get(url)
  if not sock then return nil, status end
  if status ~= 200 then return nil, "HTTP " .. status end
  local left = tonumber(headers["content-length"])
  local f = assert(io.open(path, "wb"))
  local bytes = 0
  while left > 0 do
    local chunk, err, partial = sock:receive(math.min(left, 512 * 1024))
    chunk = chunk or partial
    if not chunk or chunk == "" then f:close() return nil, err end
    f:write(chunk)
    bytes = bytes + #chunk
    left = left - #chunk
  end
  f:close()
  sock:setkeepalive(60000, 256)
  return bytes
end

return _M
