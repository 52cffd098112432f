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

  it("is built and installed by luarocks make, and the installed copy loads", function()
    local tree = os.tmpname()
    os.remove(tree)
    local rc, out = sh(string.format("luarocks --lua-version=%s --tree=%s make --deps-mode=none "
      .. "rockspec/viggle-scm-1.rockspec", ABI, tree))
    assert.are.equal(0, rc, out)
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
end)
