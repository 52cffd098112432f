-- viggle installed as a Neovim plugin, the way lazy.nvim or packer does it:
-- a copy of the checkout, its build step (`make nvim`), the directory put on
-- 'runtimepath', nothing on package.path or package.cpath. Headless Neovim
-- then runs README.md's Neovim example as written and awaits a mock job
-- (spec/hosts/nvim_plugin_init.lua). Only under LuaJIT, Neovim's Lua.
if type(jit) ~= "table" then return end

local cjson = require("cjson")
local mock_server = require("spec.mock.server")
local support = require("spec.support")
local q, read_file, sh = support.q, support.read_file, support.sh

local NVIM = os.getenv("VIGGLE_NVIM") or "nvim"

describe("Neovim plugin install (checkout copy + make nvim, on runtimepath)", function()
  local m, dir, plugin, R, build_out

  setup(function()
    assert(support.capture("command -v " .. NVIM):match("%S"), NVIM .. " not found (Debian package neovim)")
    dir = assert(support.tempdir("viggle-nvim-plugin"))
    plugin = dir .. "/lazy/viggle"
    -- what a plugin manager clones: the tracked files (and new ones not ignored), no build/
    local rc, out = sh(string.format("mkdir -p %s && cd %s && git ls-files -co --exclude-standard -z | "
      .. "xargs -0 cp --parents -t %s", q(plugin), q(support.root), q(plugin)))
    assert(rc == 0, out)
    assert(not support.exists(plugin .. "/build/jit/viggle/core.so"), "the copy has a build already")
    local brc
    brc, build_out = sh("cd " .. q(plugin) .. " && make -s nvim")
    assert(brc == 0, build_out)
    m = assert(mock_server.start())
    m:job({ id = "job_plugin", advance = "time", step = 0.05 })
    local result = dir .. "/result.json"
    local cmd = string.format("cd %s && env -u LUA_PATH -u LUA_CPATH VIGGLE_PLUGIN=%s VIGGLE_NVIM_OUT=%s "
      .. "VIGGLE_NVIM_ID=job_plugin VIGGLE_BASE_URL=%s VIGGLE_API_KEY=sk-test-valid timeout -k 5 60 %s --headless "
      .. "--clean -u NONE -i NONE -n -c %s </dev/null >%s 2>&1", q(dir), q(plugin), q(result), q(m.base_url), q(NVIM),
      q("luafile " .. support.root .. "/spec/hosts/nvim_plugin_init.lua"), q(dir .. "/nvim.log"))
    os.execute(cmd)
    local text = read_file(result)
    assert(text, "nvim wrote no results; its output:\n" .. (read_file(dir .. "/nvim.log") or ""))
    R = cjson.decode(text)
  end)

  teardown(function()
    if m then m:stop() end
    if dir then os.execute("rm -rf " .. q(dir)) end
  end)

  it("make nvim puts core.so where Neovim's loader finds it from runtimepath", function()
    assert.is_true(support.exists(plugin .. "/lua/viggle/core.so"))
    assert.are.equal(read_file(plugin .. "/build/jit/viggle/core.so"), read_file(plugin .. "/lua/viggle/core.so"))
    assert.is_false(R.cpath_has_plugin)
  end)

  it("runs README's Neovim example as written: the job is awaited, its progress in the buffer", function()
    assert.are.same({}, R.errors)
    assert.are.equal("done", R.finished_by)
    local url
    for _, n in ipairs(R.notes) do
      if n.msg:find("/video/job_plugin", 1, true) then url = n.msg end
    end
    assert.is_string(url, cjson.encode(R.notes))
    assert.matches("^http://127%.0%.0%.1:%d+/video/job_plugin%.mp4", url)
    assert.matches("^complete 100%%$", R.buffer[#R.buffer])
  end)

  it("a task that raises is said through vim.notify at level ERROR", function()
    local found
    for _, n in ipairs(R.notes) do
      if n.msg:find("a task of the plugin spec broke", 1, true) then found = n end
    end
    assert.is_table(found, cjson.encode(R.notes))
    assert.matches("^viggle: a task raised an error: ", found.msg)
    assert.are.equal(4, found.level) -- vim.log.levels.ERROR
  end)
end)
