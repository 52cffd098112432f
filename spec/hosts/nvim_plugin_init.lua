-- Neovim's init for spec/hosts/nvim_plugin_spec.lua: viggle as a plugin
-- manager installs it. VIGGLE_PLUGIN is its directory (a copy of the checkout
-- after the build step `make nvim`); it goes on 'runtimepath' as lazy.nvim and
-- packer put a plugin there, and nothing else: no package.path, no
-- package.cpath. Then the README's Neovim example runs as written, with `id`
-- (a mock job) and `buf` (a scratch buffer) defined. What happened is written
-- as JSON to VIGGLE_NVIM_OUT; the spec asserts.
-- luacheck: globals vim
local plugin = assert(os.getenv("VIGGLE_PLUGIN"), "VIGGLE_PLUGIN not set")
local out_path = assert(os.getenv("VIGGLE_NVIM_OUT"), "VIGGLE_NVIM_OUT not set")

local R = { notes = {}, errors = {} }
local function finish(why)
  R.finished_by = why
  local f = io.open(out_path, "w")
  f:write(vim.fn.json_encode(R))
  f:close()
  vim.cmd("qa!")
end
vim.defer_fn(function() finish("hard timeout") end, 20000)

vim.opt.rtp:prepend(plugin)

-- vim.notify recorded (message, level)
vim.notify = function(msg, level) R.notes[#R.notes + 1] = { msg = tostring(msg), level = level or -1 } end

-- The README's ```lua block under "### Neovim", read from the plugin's own README.md.
local readme = table.concat(vim.fn.readfile(plugin .. "/README.md"), "\n")
local block = readme:match("\n### Neovim\n.-```lua\n(.-)\n```")
if not block then
  R.errors[#R.errors + 1] = "no ```lua block under ### Neovim in README.md"
  return finish("error")
end
local buf = vim.api.nvim_create_buf(false, true)
local chunk, cerr = loadstring("local id, buf = ...\n" .. block, "=README.md (Neovim)")
if not chunk then
  R.errors[#R.errors + 1] = cerr
  return finish("error")
end
local ok, rerr = pcall(chunk, os.getenv("VIGGLE_NVIM_ID"), buf)
if not ok then
  R.errors[#R.errors + 1] = tostring(rerr)
  return finish("error")
end
R.cpath_has_plugin = package.cpath:find(plugin, 1, true) ~= nil

-- A task that raises, that nobody joins: said through vim.notify.
require("viggle").spawn(function() error("a task of the plugin spec broke") end)

vim.wait(15000, function()
  local done, reported = false, false
  for _, n in ipairs(R.notes) do
    if n.msg:find("/video/", 1, true) then done = true end
    if n.msg:find("a task of the plugin spec broke", 1, true) then reported = true end
  end
  return done and reported
end, 20)
R.buffer = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
finish("done")
