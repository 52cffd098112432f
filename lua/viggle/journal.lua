--- The batch journal: one SQLite file (through LuaSQL, Debian's
--- lua-sql-sqlite3) that records where each item of a batch is, so a batch
--- killed at any instant resumes without paying twice or losing a video.
---
--- WAL with synchronous = FULL: every state change is its own transaction,
--- and in WAL mode FULL syncs the log at each commit, so a change that
--- returned survives a crash of the process and of the machine. (NORMAL
--- would sync only at checkpoints: a power cut could take back a
--- `submitting` written before the POST, which is the one write that must
--- never be lost.) One commit costs one fsync, a few per item in all.
local errors = require("viggle.errors")

local type, tostring, tonumber, format, concat, ipairs = type, tostring, tonumber, string.format, table.concat, ipairs
local E = errors.new

local _M = {}

--- The states an item moves through (README.md, "Batches").
_M.STATES = { "planned", "submitting", "submitted", "complete", "downloaded", "failed", "cancelled", "uncertain" }

local COLUMNS = { "key", "seq", "fields", "state", "job_id", "code", "message", "credits", "exact",
                  "posts", "was_uncertain", "updated" }

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS items(
  key TEXT PRIMARY KEY,     -- the manifest's "key"
  seq INTEGER NOT NULL,     -- its line in the manifest
  fields TEXT NOT NULL,     -- the item as canonical JSON (a changed manifest is refused)
  state TEXT NOT NULL,      -- planned, submitting, submitted, complete, downloaded, failed, cancelled, uncertain
  job_id TEXT,              -- once the API answered the POST
  code TEXT,                -- the API's (or the transport's) error code
  message TEXT,             -- why it failed, or what is pending
  credits REAL,             -- the estimate (NULL: unknown)
  exact INTEGER,            -- 1 when the estimate is exact
  posts INTEGER NOT NULL DEFAULT 0,         -- POSTs sent for it
  was_uncertain INTEGER NOT NULL DEFAULT 0, -- it was uncertain once (and resubmitted)
  updated REAL              -- os.time() of the last change
)]]

local Journal = {}
Journal.__index = Journal

local function driver()
  local ok, luasql = pcall(require, "luasql.sqlite3")
  if not ok then
    return nil, E("io", "batches need LuaSQL for SQLite (Debian: apt-get install lua-sql-sqlite3): "
      .. tostring(luasql))
  end
  return luasql
end

local function sql_value(con, v)
  if v == nil then return "NULL" end
  if type(v) == "boolean" then return v and "1" or "0" end
  if type(v) == "number" then return format("%.17g", v) end
  return "'" .. con:escape(tostring(v)) .. "'"
end

--- Runs a statement; returns true, or nil, err. With `rows`, a query's rows
--- come back as a list of tables.
---@param sql string
---@param rows boolean|nil
---@return true|table[]|nil result
---@return viggle.Error|nil err
function Journal:exec(sql, rows)
  local cur, err = self.con:execute(sql)
  if not cur then return nil, E("io", format("journal %s: %s", self.path, tostring(err))) end
  if rows and type(cur) == "userdata" then
    local out = {}
    while true do
      local row = cur:fetch({}, "a")
      if not row then break end
      out[#out + 1] = row
    end
    cur:close()
    return out
  elseif type(cur) == "userdata" then
    cur:close()
  end
  return true
end

--- Opens the journal at `path`, creating it; with opts.must_exist, an
--- existing journal only, for reading.
---@param path string
---@param opts {must_exist: boolean?}|nil
---@return table|nil journal
---@return viggle.Error|nil err
function _M.open(path, opts)
  local luasql, err = driver()
  if not luasql then return nil, err end
  if opts and opts.must_exist then
    local f = io.open(path, "rb")
    if not f then return nil, E("invalid_argument", "no journal at " .. path .. " (the batch has not run yet)") end
    f:close()
  end
  local env = luasql.sqlite3()
  local con, cerr = env:connect(path)
  if not con then
    env:close()
    return nil, E("io", format("cannot open the journal %s: %s", path, tostring(cerr)))
  end
  local self = setmetatable({ env = env, con = con, path = path }, Journal)
  -- busy_timeout first: `batch status` may read while a batch writes. A
  -- reader (must_exist) writes nothing, so it never waits for the writer.
  local setup = { "PRAGMA busy_timeout=10000", "PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", SCHEMA }
  if opts and opts.must_exist then setup = { "PRAGMA busy_timeout=10000", "PRAGMA query_only=1" } end
  for _, sql in ipairs(setup) do
    local ok, xerr = self:exec(sql)
    if not ok then
      self:close()
      return nil, xerr
    end
  end
  return self
end

--- Takes the run lock: one batch at a time on a journal (two would both send
--- the same planned items). The lock is an exclusive SQLite transaction on
--- PATH-lock, held until close; the system drops it when the process dies,
--- so a killed batch never leaves it behind.
---@return true|nil ok
---@return viggle.Error|nil err
function Journal:lock()
  local luasql = driver()
  local env = luasql.sqlite3()
  local con, err = env:connect(self.path .. "-lock")
  if con then
    local cur = con:execute("PRAGMA busy_timeout=0")
    if type(cur) == "userdata" then cur:close() end
    cur, err = con:execute("BEGIN EXCLUSIVE")
    if cur then
      self.lock_env, self.lock_con = env, con
      return true
    end
    con:close()
  end
  env:close()
  return nil, E("io", format("another batch is running on the journal %s (%s)", self.path, tostring(err)))
end

--- Closes the journal and drops the run lock (again is fine).
---@return nil
function Journal:close()
  if self.lock_con then
    self.lock_con:execute("ROLLBACK")
    self.lock_con:close()
    self.lock_env:close()
    self.lock_con, self.lock_env = nil, nil
  end
  if self.con then self.con:close() self.con = nil end
  if self.env then self.env:close() self.env = nil end
end

local function row_out(r)
  r.seq = tonumber(r.seq)
  r.credits = tonumber(r.credits)
  r.exact = tonumber(r.exact) == 1
  r.posts = tonumber(r.posts) or 0
  r.was_uncertain = tonumber(r.was_uncertain) == 1
  r.updated = tonumber(r.updated)
  return r
end

--- Every item, in manifest order.
---@return table[]|nil rows
---@return viggle.Error|nil err
function Journal:items()
  local rows, err = self:exec("SELECT " .. concat(COLUMNS, ",") .. " FROM items ORDER BY seq, key", true)
  if not rows then return nil, err end
  for _, r in ipairs(rows) do row_out(r) end
  return rows
end

--- Adds items {key, seq, fields, credits, exact} as `planned`, in one
--- transaction (one sync for the lot).
---@param list table[]
---@return true|nil ok
---@return viggle.Error|nil err
function Journal:add(list)
  if #list == 0 then return true end
  local ok, err = self:exec("BEGIN IMMEDIATE")
  if not ok then return nil, err end
  for _, it in ipairs(list) do
    ok, err = self:exec(format("INSERT INTO items(key, seq, fields, state, credits, exact, updated) "
      .. "VALUES(%s, %d, %s, 'planned', %s, %s, %s)", sql_value(self.con, it.key), it.seq,
      sql_value(self.con, it.fields), sql_value(self.con, it.credits), sql_value(self.con, it.exact),
      sql_value(self.con, os.time())))
    if not ok then
      self:exec("ROLLBACK")
      return nil, err
    end
  end
  return self:exec("COMMIT")
end

--- Sets fields of one item (state, job_id, code, message, credits, exact,
--- posts, was_uncertain, seq); synced when it returns. `false` stores NULL.
---@param key string
---@param t table
---@return true|nil ok
---@return viggle.Error|nil err
function Journal:set(key, t)
  local sets = {}
  for _, c in ipairs(COLUMNS) do
    local v = t[c]
    if v ~= nil and c ~= "key" then
      if v == false and c ~= "exact" and c ~= "was_uncertain" then v = nil end
      sets[#sets + 1] = c .. " = " .. sql_value(self.con, v)
    end
  end
  sets[#sets + 1] = "updated = " .. sql_value(self.con, os.time())
  return self:exec(format("UPDATE items SET %s WHERE key = %s", concat(sets, ", "), sql_value(self.con, key)))
end

return _M
