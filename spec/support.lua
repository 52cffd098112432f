-- Small helpers the specs share: the interpreter running them, shell quoting,
-- files and commands. (spec/mock/server.lua keeps its own: it also runs as a
-- script from anywhere.)
local M = {}

--- The interpreter busted runs the specs with, as a command name.
M.interp = (type(jit) == "table") and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

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

--- Writes `text` to a file (replacing it); returns the path.
function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
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

--- Sleeps without viggle (for specs that must not use the library to wait).
function M.sleep(s)
  os.execute(string.format("sleep %.3f", s))
end

return M
