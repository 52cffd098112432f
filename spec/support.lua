-- Small helpers the specs, the mock server and the benchmarks share: the
-- interpreter running them and the module built for it, shell quoting, files,
-- commands, and one way to start (and stop) an nginx from a template.
-- Only the standard library: spec/mock/server.lua also runs as a script.
local M = {}

--- The interpreter busted runs the specs with, as a command name.
M.interp = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

--- The build the running interpreter loads: "5.1" ... "5.4" or "jit" (make LUA=...).
M.build = (type(jit) == "table") and "jit" or _VERSION:match("%d+%.%d+")

--- A string quoted for sh.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The whole content of a file, or nil when it cannot be read.
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- The md5 of a file, in hex (md5sum).
function M.md5(path)
  return M.capture("md5sum " .. M.q(path)):match("^(%x+)")
end

--- True when a file exists (and can be opened).
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- What a command writes on stdout.
function M.capture(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a") or ""
  p:close()
  return s
end

--- Runs a command; returns its exit code and what it wrote (stdout and stderr).
function M.sh(cmd)
  local out = M.capture(cmd .. " 2>&1; echo \"~rc=$?\"")
  return tonumber(out:match("~rc=(%d+)%s*$")), (out:gsub("~rc=%d+%s*$", ""))
end

--- Writes a whole file (raises when it cannot); returns the path.
function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

--- True when a command exits 0 (os.execute answers a number on 5.1/LuaJIT).
function M.run_ok(cmd)
  local a = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true
end

--- Sleeps without viggle (for specs that must not use the library to wait).
function M.sleep(s)
  os.execute(string.format("sleep %.3f", s))
end


-- The checkout: two levels above this file, as an absolute path.
local function root()
  local src = debug.getinfo(1, "S").source
  local dir = (src:sub(1, 1) == "@" and src:sub(2) or "spec/support.lua"):match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = M.capture("pwd"):gsub("%s+$", "") .. "/" .. dir end
  dir = dir:gsub("/%./", "/"):gsub("/%.$", ""):gsub("//+", "/")
  return (dir:gsub("/spec$", ""))
end

--- The checkout's root directory (absolute).
M.root = root()

--- Where `make LUA=ver` puts the module (ver: "5.4", "jit"...; default the
--- running interpreter's), under `base` (default this checkout).
function M.build_dir(ver, base)
  return (base or M.root) .. "/build/" .. (ver or M.build)
end

-- ---- ports and processes ----------------------------------------------------

local seeded = false
--- A port nothing listens on (from /proc/net/tcp{,6}), in 20000-60000, not in `avoid` (a set).
function M.free_port(avoid)
  if not seeded then
    local seed = tonumber(M.capture("od -An -N4 -tu4 /dev/urandom"):match("%d+")) or os.time()
    math.randomseed(seed % 2147483647)
    seeded = true
  end
  local busy = {}
  for _, f in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    for port, st in (M.read_file(f) or ""):gmatch("\n%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)") do
      if st == "0A" then busy[tonumber(port, 16)] = true end
    end
  end
  while true do
    local p = math.random(20000, 60000)
    if not busy[p] and not (avoid and avoid[p]) then return p end
  end
end

--- True while a process runs (a zombie, which a slow PID 1 has not reaped yet, counts as gone).
function M.is_alive(pid)
  pid = tonumber(pid)
  if not pid then return false end
  local stat = M.read_file("/proc/" .. pid .. "/stat")
  if stat then return stat:match("%) (%a)") ~= "Z" end
  return M.run_ok("kill -0 " .. pid .. " 2>/dev/null")
end

--- Stops a process: TERM, up to 5 s, then KILL.
function M.kill(pid)
  if not M.is_alive(pid) then return end
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  for _ = 1, 100 do
    if not M.is_alive(pid) then return end
    M.sleep(0.05)
  end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
end

--- A fresh directory under $TMPDIR (or /tmp) named NAME.XXXXXXXX, or nil.
function M.tempdir(name)
  local tmp = os.getenv("TMPDIR")
  if not tmp or tmp == "" then tmp = "/tmp" end
  local dir = M.capture("mktemp -d " .. M.q(tmp .. "/" .. name .. ".XXXXXXXX")):gsub("%s+$", "")
  return dir ~= "" and dir or nil
end

--- True when a GET of `url` answers 200 within a second (curl).
function M.http_ok(url)
  return M.capture("curl -s -o /dev/null --max-time 1 -w '%{http_code}' " .. M.q(url) .. " 2>/dev/null")
    :match("^200") ~= nil
end

-- ---- nginx --------------------------------------------------------------------

--- An nginx started by M.nginx: prefix, ports (name -> number), and the methods below.
M.Nginx = {}
M.Nginx.__index = M.Nginx

--- The pid of the master (from PREFIX/logs/nginx.pid), or nil.
function M.Nginx:pid()
  local s = M.read_file(self.prefix .. "/logs/nginx.pid")
  return s and tonumber(s:match("%d+")) or self.nginx_pid
end

function M.Nginx:error_log() return M.read_file(self.prefix .. "/logs/error.log") or "" end

--- Stops nginx (when this object started it) and removes a PREFIX made by M.tempdir.
function M.Nginx:stop()
  if self.stopped then return true end
  self.stopped = true
  if self.owned == false then return true end
  local pid = self:pid()
  if pid then M.kill(pid) end
  if self.prefix and self.prefix:match("^/.+/viggle%-[%w-]+%.%w+$") and not self.keep then
    os.execute("rm -rf " .. M.q(self.prefix))
  end
  return true
end

-- One attempt: picks the ports, writes PREFIX/nginx.conf, starts nginx.
-- Returns the object, or nil and what nginx said.
local function nginx_once(opts, prefix, tpl)
  local ports, taken = {}, {}
  for _, name in ipairs(opts.ports or {}) do
    local fixed = opts.fixed and opts.fixed[name]
    ports[name] = fixed or M.free_port(taken)
    taken[ports[name]] = true
  end
  local vars = opts.vars and opts.vars(ports, prefix) or {}
  vars.PREFIX = vars.PREFIX or prefix
  vars.USER_LINE = M.capture("id -u"):match("^0%s*$") and "user root;" or ""
  for name, port in pairs(ports) do vars[name] = vars[name] or port end
  local conf = tpl:gsub("@([%u%d_]+)@", function(name)
    local v = vars[name]
    if v == nil then error(opts.template .. ": no value for @" .. name .. "@") end
    return tostring(v)
  end)
  M.write_file(prefix .. "/nginx.conf", conf)
  local log = prefix .. "/logs/start.log"
  if M.run_ok((opts.wrap or "") .. M.q(os.getenv("VIGGLE_MOCK_NGINX") or "nginx") .. " -p " .. M.q(prefix .. "/")
      .. " -c " .. M.q(prefix .. "/nginx.conf") .. " -e " .. M.q(prefix .. "/logs/error.log")
      .. " >" .. M.q(log) .. " 2>&1") then
    return setmetatable({ prefix = prefix, ports = ports, owned = true, keep = opts.keep }, opts.class or M.Nginx)
  end
  return nil, M.read_file(log) or "nginx failed"
end

--- Starts nginx on a configuration made from a template, on free ports.
--- opts: template (path of a .conf.in with @NAME@ holes), ports (names of the
--- ports to pick, e.g. {"PORT"}), fixed (name -> port to use instead),
--- vars(ports, prefix) -> the other @NAME@ values (PREFIX and USER_LINE are
--- given), ready(obj) -> true once it answers, prefix (default a fresh
--- TMPDIR/NAME.XXXXXXXX, removed on stop), name ("viggle-nginx"), keep, wrap
--- (a command prefix such as "taskset -c 1 "), class (a metatable whose
--- __index leads to M.Nginx). Bind failures on random ports are retried.
--- Returns the object (prefix, ports, nginx_pid) or nil, err.
function M.nginx(opts)
  local tpl = M.read_file(opts.template)
  if not tpl then return nil, "cannot read " .. opts.template end
  local prefix = opts.prefix or M.tempdir(opts.name or "viggle-nginx")
  if not prefix then return nil, "mktemp failed" end
  os.execute("mkdir -p " .. M.q(prefix .. "/logs") .. " " .. M.q(prefix .. "/tmp"))
  local fixed = opts.fixed and next(opts.fixed) ~= nil
  local last = "no attempt"
  for _ = 1, fixed and 1 or 10 do
    local n, err = nginx_once(opts, prefix, tpl)
    if n then
      for _ = 1, 200 do
        if opts.ready(n) then
          n.nginx_pid = n:pid()
          return n
        end
        M.sleep(0.05)
      end
      last = "nginx started but does not answer: " .. n:error_log()
      n.keep = n.keep or opts.prefix ~= nil
      n:stop()
      return nil, last
    end
    last = err
    if not last:find("in use", 1, true) and not last:find("bind()", 1, true) then break end
  end
  if not opts.prefix then os.execute("rm -rf " .. M.q(prefix)) end
  return nil, "nginx did not start: " .. last
end

-- ---- redis-server -----------------------------------------------------------

--- True while something listens on 127.0.0.1:port (from /proc/net/tcp).
function M.listening(port)
  local hex = string.format("%04X", port)
  for p, st in (M.read_file("/proc/net/tcp") or ""):gmatch("\n%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)") do
    if p == hex and st == "0A" then return true end
  end
  return false
end

--- A redis-server started by M.redis: port, dir, url, pid, and the methods below.
M.Redis = {}
M.Redis.__index = M.Redis

-- Starts the server on self.port (the same port and data when restarted).
function M.Redis:start()
  local args = { "--port", self.port, "--bind", "127.0.0.1", "--save", "''", "--dir", M.q(self.dir),
                 "--daemonize", "no", "--logfile", M.q(self.dir .. "/redis.log") }
  if self.aof then
    -- the journal survives a kill of Redis only when every write is in the AOF before Redis answers
    for _, a in ipairs({ "--appendonly", "yes", "--appendfsync", "always" }) do args[#args + 1] = a end
  else
    for _, a in ipairs({ "--appendonly", "no" }) do args[#args + 1] = a end
  end
  if self.password then args[#args + 1] = "--requirepass " .. M.q(self.password) end
  self.pid = tonumber(M.capture("(redis-server " .. table.concat(args, " ") .. " >/dev/null 2>&1 </dev/null & echo $!)"))
  for _ = 1, 200 do
    if M.listening(self.port) then return true end
    if not M.is_alive(self.pid) then break end
    M.sleep(0.025)
  end
  return nil, "redis-server did not start: " .. (M.read_file(self.dir .. "/redis.log") or "")
end

--- Ends the server at once (SIGKILL), as a crash would.
function M.Redis:kill()
  if self.pid then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  for _ = 1, 200 do
    if not M.is_alive(self.pid) and not M.listening(self.port) then break end
    M.sleep(0.025)
  end
  self.pid = nil
end

--- Stops the server and removes its directory.
function M.Redis:stop()
  if self.pid then M.kill(self.pid) end
  self.pid = nil
  if self.dir:match("^/.+/viggle%-redis%.%w+$") then os.execute("rm -rf " .. M.q(self.dir)) end
end

--- Starts redis-server on a free port of 127.0.0.1, its data in a fresh
--- directory, nothing saved (--save '', no AOF) unless opts.aof (appendonly,
--- fsync always: it survives a SIGKILL); opts.password (--requirepass).
--- Never on 6379. Returns the object (url = redis://127.0.0.1:PORT) or nil, err.
function M.redis(opts)
  opts = opts or {}
  local dir = M.tempdir("viggle-redis")
  if not dir then return nil, "mktemp failed" end
  local last
  for _ = 1, 5 do
    local r = setmetatable({ port = M.free_port({ [6379] = true }), dir = dir, aof = opts.aof,
                             password = opts.password }, M.Redis)
    r.url = "redis://127.0.0.1:" .. r.port
    local ok, err = r:start()
    if ok then return r end
    last = err
    r:kill()
  end
  os.execute("rm -rf " .. M.q(dir))
  return nil, last
end

--- Runs bin/viggle as a user would: from the checkout's root, with `env`
--- (shell text, e.g. "VIGGLE_BASE_URL=... VIGGLE_API_KEY=..."), `args`
--- (shell text) and `stdin` (text or nil), its output kept in files of `dir`.
--- Returns the exit code, stdout and stderr.
function M.viggle_cli(dir, env, args, stdin)
  M.write_file(dir .. "/in", stdin or "")
  local rc = M.sh(string.format("(cd %s && env %s %s bin/viggle %s >%s 2>%s <%s)", M.q(M.root), env,
    M.interp, args, M.q(dir .. "/out"), M.q(dir .. "/err"), M.q(dir .. "/in")))
  return rc, M.read_file(dir .. "/out") or "", M.read_file(dir .. "/err") or ""
end

return M
