-- The rockspec: it names every module of the library, and Debian's luarocks
-- builds and installs it for the interpreter running the specs.
local support = require("spec.support")
local INTERP = support.interp
local ABI = _VERSION:match("%d+%.%d+")

local sh = support.sh

describe("rockspec/viggle-scm-1.rockspec", function()
  local spec = {}
  setup(function()
    local chunk = assert(loadfile("rockspec/viggle-scm-1.rockspec", "t", spec))
    if setfenv then setfenv(chunk, spec) end -- luacheck: ignore 143 (5.1)
    chunk()
  end)

  it("declares the Lua versions it supports and its one Lua dependency", function()
    assert.are.same({ "lua >= 5.1, < 5.5", "lua-cjson >= 2.1" }, spec.dependencies)
  end)

  it("names every file under lua/viggle and the C sources", function()
    local listed = {}
    for name, m in pairs(spec.build.modules) do
      if type(m) == "string" then listed[m] = name end
    end
    local p, n = assert(io.popen("ls lua/viggle/*.lua")), 0
    for file in p:lines() do
      n = n + 1
      assert.is_string(listed[file], file .. " is not in the rockspec")
      local expect = file:match("lua/viggle/(.-)%.lua$")
      assert.are.equal(expect == "init" and "viggle" or ("viggle." .. expect), listed[file])
    end
    p:close()
    assert.is_true(n > 1, "ls lua/viggle/*.lua listed " .. n .. " files")
    local srcs = {}
    for _, s in ipairs(spec.build.modules["viggle.core"].sources) do srcs[s] = true end
    p = assert(io.popen("ls csrc/*.c"))
    for file in p:lines() do assert.is_true(srcs[file], file .. " is not in the rockspec") end
    p:close()
  end)

  it("is built and installed by luarocks make, which takes Debian's lua-cjson as the dependency", function()
    local tree = os.tmpname()
    os.remove(tree)
    -- no --deps-mode=none: the dependency is checked, and met by the system copy
    local rc, out = sh(string.format("LUAROCKS_CONFIG=rockspec/system-lua-cjson.lua luarocks --lua-version=%s "
      .. "--tree=%s make rockspec/viggle-scm-1.rockspec", ABI, tree))
    assert.are.equal(0, rc, out)
    assert.is_nil(out:find("Could not satisfy", 1, true), out)
    rc, out = sh(string.format([[cd / && LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' ]]
      .. [[LUA_CPATH='%s/lib/lua/%s/?.so;;' %s -e 'local v = require("viggle") ]]
      .. [[local c = assert(v.new{base_url = "http://127.0.0.1:9"}) io.write(v.VERSION, " ", ]]
      .. [[package.searchpath and package.searchpath("viggle.core", package.cpath) or "5.1")']],
      tree, ABI, tree, ABI, tree, ABI, INTERP))
    assert.are.equal(0, rc, out)
    assert.matches("^%d+%.%d+%.%d+ ", out)
    if not out:match(" 5%.1$") then assert.matches(tree:gsub("%p", "%%%0"), out) end
    rc = sh(string.format("test -x %s/bin/viggle", tree))
    assert.are.equal(0, rc)
    os.execute("rm -rf " .. tree)
  end)

  it("without that configuration LuaRocks does not see Debian's lua-cjson (why the file exists)", function()
    local tree = os.tmpname()
    os.remove(tree)
    local rc, out = sh(string.format("LUAROCKS_CONFIG=/dev/null timeout 60 luarocks --lua-version=%s --tree=%s "
      .. "--only-server=file:///nonexistent make rockspec/viggle-scm-1.rockspec", ABI, tree))
    os.execute("rm -rf " .. tree)
    assert.are_not.equal(0, rc)
    assert.matches("lua%-cjson", out)
  end)
end)

describe("make install", function()
  -- the running interpreter and the one that shares (or not) its ABI directory
  local this = support.build
  local other = (this == "jit") and "5.1" or "jit"
  local prefix

  setup(function()
    prefix = assert(support.tempdir("viggle-install"))
    for _, v in ipairs({ this, other }) do
      local rc, out = sh(string.format("make -s install LUA=%s PREFIX=%s", v, support.q(prefix)))
      assert(rc == 0, out)
    end
  end)
  teardown(function() if prefix then os.execute("rm -rf " .. support.q(prefix)) end end)

  it("keeps each interpreter's module in a directory of its own (LuaJIT apart from 5.1)", function()
    local function so(v)
      return prefix .. (v == "jit" and "/lib/luajit/5.1" or "/lib/lua/" .. v) .. "/viggle/core.so"
    end
    for _, v in ipairs({ this, other }) do
      assert.is_true(support.exists(so(v)), so(v))
      assert.are.equal(support.read_file(support.build_dir(v) .. "/viggle/core.so"), support.read_file(so(v)),
        so(v) .. " is not the build of " .. v)
      assert.is_true(support.run_ok("test -x " .. support.q(prefix .. "/bin/viggle-" .. v)))
    end
  end)

  it("bin/viggle and each bin/viggle-LUA find their modules under that PREFIX, from anywhere", function()
    local mock = require("spec.mock.server")
    local m = assert(mock.start())
    m:job({ id = "job_installed" })
    local env = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 VIGGLE_BASE_URL=" .. m.base_url
      .. " VIGGLE_API_KEY=sk-test-valid "
    local rc, out = sh("cd / && " .. env .. support.q(prefix .. "/bin/viggle") .. " --help")
    assert.are.equal(0, rc, out)
    assert.matches("Usage: viggle COMMAND", out)
    for _, v in ipairs({ this, other }) do
      rc, out = sh("cd / && " .. env .. "VIGGLE_LUA=" .. v .. " " .. support.q(prefix .. "/bin/viggle")
        .. " status job_installed")
      assert.are.equal(0, rc, out)
      assert.matches("^job_installed\n", out)
      rc, out = sh("cd / && " .. env .. support.q(prefix .. "/bin/viggle-" .. v) .. " --version")
      assert.are.equal(0, rc, out)
      assert.matches(v == "jit" and "LuaJIT" or ("Lua " .. v), out)
    end
    m:stop()
  end)
end)
