--- A Redis connection for the shared journal of a fleet: a URL
--- (redis://[:password@]host[:port][/db], or redis://user:password@...),
--- AUTH and SELECT, server-side scripts by EVALSHA (loaded again after a
--- restart of Redis), and a connection that comes back: when Redis goes away
--- mid-run, each call tries again for up to `wait` seconds before it fails.
---
--- The commands go through viggle.core (hiredis, blocking, each read or write
--- bounded by `timeout`), or inside nginx through a cosocket (viggle.resp),
--- which does not block the worker. See README.md, "Fleets".
local core = require("viggle.core")
local errors = require("viggle.errors")
local loop = require("viggle.loop")
local resp = require("viggle.resp")

local type, tostring, tonumber, setmetatable, format = type, tostring, tonumber, setmetatable, string.format
local unpack = table.unpack or unpack ---@diagnostic disable-line: deprecated
local E = errors.new

local _M = {}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Splits a redis:// URL: {host, port, db, user, password}, or nil, err.
---@param url string
---@return {host: string, port: integer, db: integer, user: string|nil, password: string|nil}|nil
---@return viggle.Error|nil err
function _M.parse(url)
  if type(url) ~= "string" then error("bad argument #1 to 'parse' (string expected)", 2) end
  local rest = url:match("^redis://(.*)$")
  if not rest then
    return nil, E("invalid_argument", format("not a redis:// URL: %q (redis://[:password@]host[:port][/db])", url))
  end
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  local user, password
  if auth then
    user, password = auth:match("^([^:]*):(.*)$")
    if not user then user, password = "", auth end
    user, password = unescape(user), unescape(password)
    if user == "" then user = nil end
  end
  local hostport, db = hostpart:match("^([^/]*)/?(%d*)/?$")
  if not hostport then return nil, E("invalid_argument", format("bad database in %q (a number after the /)", url)) end
  local host, port = hostport:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then host = "127.0.0.1" end
  port = tonumber(port ~= "" and port or "6379")
  if not port or port < 1 or port > 65535 then return nil, E("invalid_argument", format("bad port in %q", url)) end
  return { host = host, port = port, db = tonumber(db ~= "" and db or "0"), user = user, password = password }
end

--- The URL without its password (for messages).
---@param url string
---@return string
function _M.redact(url)
  return (url:gsub("^(redis://[^@]*:)[^@]*@", "%1***@"))
end

local Conn = {}
Conn.__index = Conn

-- One attempt: connect, AUTH, SELECT. Returns the core connection or nil, err.
local function open(self)
  local u = self.u
  -- inside nginx a cosocket (the worker goes on serving while Redis answers), else hiredis
  local connect = resp.usable() and resp.connect or core.redis_connect
  local c, msg, code = connect(u.host, u.port, self.timeout)
  if not c then
    return nil, E("network", format("cannot reach Redis at %s: %s", self.where, msg), { code = "REDIS_UNREACHABLE",
      transport = code })
  end
  if u.password then
    local ok, amsg
    if u.user then ok, amsg = c:command("AUTH", u.user, u.password) else ok, amsg = c:command("AUTH", u.password) end
    if not ok then
      c:close()
      return nil, E("auth", format("Redis at %s refused the password: %s", self.where, tostring(amsg)),
        { code = "REDIS_AUTH" })
    end
  end
  if u.db ~= 0 then
    local ok, smsg = c:command("SELECT", tostring(u.db))
    if not ok then
      c:close()
      return nil, E("invalid_argument", format("Redis at %s: SELECT %d: %s", self.where, u.db, tostring(smsg)),
        { code = "REDIS" })
    end
  end
  -- A server that wants a password answers NOAUTH to the first real command.
  local pong, pmsg = c:command("PING")
  if not pong then
    c:close()
    if tostring(pmsg):match("^NOAUTH") or tostring(pmsg):match("^WRONGPASS") then
      return nil, E("auth", format("Redis at %s wants a password (redis://:PASSWORD@host): %s", self.where,
        tostring(pmsg)), { code = "REDIS_AUTH" })
    end
    return nil, E("network", format("Redis at %s: %s", self.where, tostring(pmsg)), { code = "REDIS_UNREACHABLE" })
  end
  self.sha = {} -- a new server (or a restarted one) may not have our scripts
  return c
end

--- Connects to the Redis at `url`. opts: timeout (seconds per read or
--- write, default 2), wait (how long a call keeps trying while Redis is
--- away, default 30; 0: never), on_wait(message) (called once when a call
--- starts waiting). Fails at once (nil, err) when Redis cannot be reached
--- now or refuses the password: no work starts without the journal.
---@param url string
---@param opts {timeout: number?, wait: number?, on_wait: fun(msg: string)?}|nil
---@return table|nil conn
---@return viggle.Error|nil err
function _M.connect(url, opts)
  opts = opts or {}
  local u, err = _M.parse(url)
  if not u then return nil, err end
  local self = setmetatable({ u = u, url = url, where = format("%s:%d/%d", u.host, u.port, u.db),
                              timeout = opts.timeout or 2, wait = opts.wait or 30, on_wait = opts.on_wait,
                              sha = {} }, Conn)
  self.c, err = open(self)
  if not self.c then return nil, err end
  return self
end


--- Runs one command; returns the reply, or nil, err. While Redis is away
--- (the connection failed) it reconnects and tries again for up to `wait`
--- seconds: the commands the journal sends are safe to send twice.
---@param ... string|number the command and its arguments
---@return any reply
---@return viggle.Error|nil err
function Conn:call(...)
  local deadline, told
  while true do
    local lost
    if self.c then
      local r, msg, code = self.c:command(...)
      if r ~= nil then return r end
      if code == "reply" then return nil, E("io", "Redis: " .. tostring(msg), { code = "REDIS", reply = msg }) end
      self.c:close()
      self.c = nil
      lost = E("network", format("lost Redis at %s: %s", self.where, tostring(msg)), { code = "REDIS_UNREACHABLE" })
    else
      local c, oerr = open(self)
      if c then
        self.c = c
      else
        if oerr.kind == "auth" then return nil, oerr end
        lost = oerr
      end
    end
    if lost then
      local t = core.now()
      deadline = deadline or t + self.wait
      if t >= deadline then return nil, lost end
      if not told and self.on_wait then
        told = true
        self.on_wait(format("%s; trying again for %gs", lost.message, self.wait))
      end
      loop.sleep(0.2) -- yields inside a task (and to nginx), else sleeps
    end
  end
end

--- Runs a server-side script (EVALSHA, loading it when Redis does not have
--- it). `keys` and `args` are lists of strings (or numbers).
---@param script string
---@param keys string[]
---@param args (string|number)[]
---@return any reply
---@return viggle.Error|nil err
function Conn:eval(script, keys, args)
  local argv = { "EVALSHA", false, tostring(#keys) }
  for i = 1, #keys do argv[#argv + 1] = keys[i] end
  for i = 1, #args do argv[#argv + 1] = tostring(args[i]) end
  for _ = 1, 3 do
    local sha = self.sha[script]
    if not sha then
      local s, err = self:call("SCRIPT", "LOAD", script)
      if not s then return nil, err end
      sha = s
      self.sha[script] = s
    end
    argv[2] = sha
    local r, err = self:call(unpack(argv))
    if r ~= nil then return r end
    if not (err.reply and err.reply:match("^NOSCRIPT")) then return nil, err end
    self.sha = {} -- Redis restarted (or SCRIPT FLUSH): load again
  end
  return nil, E("io", "Redis keeps forgetting the journal's scripts", { code = "REDIS" })
end

--- Closes the connection.
---@return nil
function Conn:close()
  if self.c then self.c:close() self.c = nil end
end

return _M
