-- Every ```lua example of README.md runs, as written, against the mock API,
-- on the interpreter running the specs, so the README cannot drift.
--
-- The convention (README.md's "Tests" section says it too):
-- * Each ```lua block is a script of its own, run by the interpreter with the
--   LUA_PATH and LUA_CPATH of README's "From a checkout" paragraph (read from
--   README.md itself), VIGGLE_BASE_URL and VIGGLE_API_KEY set to the mock, in
--   a fresh directory holding the input files the examples name: dancer.png,
--   me.png, character.png (an image), moves.mp4, dance.mp4, demo.mp4 (a video),
--   spec/mock/files/ (the mock's files), shots.jsonl (a batch manifest of two
--   renders into out/, which exists).
-- * `viggle` is always given (`local viggle = require("viggle")`). A first line
--   `-- needs: a, b` asks for more, from NEEDS below: client, id, id1, id2, ids,
--   job, running_id, failed_id. They are put on that first line, so line numbers in
--   messages are the README's.
-- * A string literal "job_..." in a block names a job the mock is told about
--   (it completes), so `viggle.await("job_abc123xyz")` works as written.
-- * A block that cannot run stand-alone (inside Neovim, nginx) is preceded by
--   `<!-- readme-spec: skip, runs in spec/PATH -->`; this spec checks that PATH
--   exists and reads README.md (so it really runs the example).
-- What is checked, per block: the first run exits 0 with nothing on stderr; a
-- second run in the same directory (files now exist) exits 0 or fails with a
-- "viggle: " message; a run against an API that answers 404 everywhere exits
-- 0 or fails with a "viggle: " message, never a Lua error such as indexing nil.
local mock_server = require("spec.mock.server")
local support = require("spec.support")
local q, sh, read_file, write_file = support.q, support.sh, support.read_file, support.write_file

local ROOT = support.root
local KEY = "sk-test-valid"
local IMAGES = { "dancer.png", "me.png", "character.png" }
local VIDEOS = { "moves.mp4", "dance.mp4", "demo.mp4" }

local README = assert(read_file(ROOT .. "/README.md"), "README.md not found")

-- The ```lua blocks: {code, line (of the fence), skip (the comment's text) or nil}.
local function lua_blocks(text)
  local blocks, lines = {}, {}
  for l in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    if lines[i]:match("^```lua%s*$") then
      local body, j = {}, i + 1
      while j <= #lines and not lines[j]:match("^```%s*$") do
        body[#body + 1] = lines[j]
        j = j + 1
      end
      local before = i > 1 and lines[i - 1] or ""
      blocks[#blocks + 1] = { code = table.concat(body, "\n") .. "\n", line = i,
                              skip = before:match("^<!%-%-%s*readme%-spec:%s*skip,?%s*(.-)%s*%-%->") }
      i = j
    end
    i = i + 1
  end
  return blocks
end

-- LUA_PATH and LUA_CPATH as README's "From a checkout" paragraph sets them,
-- for this checkout and the running interpreter's build.
local function checkout_env()
  local section = README:match("\n### From a checkout\n(.-)\n#") or ""
  local path = section:match('export LUA_PATH="([^"]+)"')
  local cpath = section:match('export LUA_CPATH="([^"]+)"')
  assert(path and cpath, "README's From a checkout paragraph lost its export LUA_PATH/LUA_CPATH lines")
  path = path:gsub("%$PWD", ROOT)
  cpath = cpath:gsub("%$PWD", ROOT):gsub("/build/[%w.]+/", "/build/" .. support.build .. "/")
  return "LUA_PATH=" .. q(path) .. " LUA_CPATH=" .. q(cpath)
end

-- What a "-- needs:" line may ask for: name -> function(ctx) giving its Lua text.
local NEEDS = {
  client = function() return "local client = assert(viggle.new())" end,
  id = function(ctx) return "local id = " .. string.format("%q", ctx.job("readme_id")) end,
  id1 = function(ctx) return "local id1 = " .. string.format("%q", ctx.job("readme_id1")) end,
  id2 = function(ctx) return "local id2 = " .. string.format("%q", ctx.job("readme_id2")) end,
  ids = function(ctx)
    return string.format("local ids = { %q, %q, %q }", ctx.job("readme_ids1"), ctx.job("readme_ids2"),
      ctx.job("readme_ids3"))
  end,
  running_id = function(ctx)
    return "local running_id = " .. string.format("%q", ctx.job("readme_running", "stuck"))
  end,
  failed_id = function(ctx) return "local failed_id = " .. string.format("%q", ctx.job("readme_failed", "failed")) end,
  job = function(ctx) return "local job = " .. ctx.done_job() end,
}

-- The line that replaces a block's "-- needs:" line (or is put before it).
local function preamble(code, ctx)
  local parts = { "local viggle = require('viggle')" }
  local first = code:match("^([^\n]*)")
  local list = first:match("^%-%-%s*needs:%s*(.-)%s*$")
  for name in (list or ""):gmatch("[%w_]+") do
    local make = NEEDS[name]
    if not make then
      local known = {}
      for k in pairs(NEEDS) do known[#known + 1] = k end
      table.sort(known)
      error("README example asks for '" .. name .. "': spec/readme_spec.lua knows " .. table.concat(known, ", "))
    end
    parts[#parts + 1] = make(ctx)
  end
  local line = table.concat(parts, " ")
  if list then return line .. code:gsub("^[^\n]*", "", 1) end
  return line .. " " .. code -- on the block's first line: the line numbers stay the README's
end

describe("README.md examples", function()
  local m, env, blocks, work, n = nil, nil, lua_blocks(README), nil, 0

  setup(function()
    m = assert(mock_server.start())
    env = checkout_env()
    work = assert(support.tempdir("viggle-readme"))
  end)
  teardown(function()
    if m then m:stop() end
    if work then os.execute("rm -rf " .. q(work)) end
  end)

  -- A context: jobs made at the mock on demand (they complete at once).
  local function new_ctx()
    local ctx = {}
    function ctx.job(id, outcome)
      m:job({ id = id, outcome = outcome, advance = "time", step = 0.001 })
      return id
    end
    function ctx.done_job()
      -- a finished job as await returns it: made and followed here, written as a table literal
      local id = ctx.job("readme_job")
      local viggle = require("viggle")
      local c = assert(viggle.new({ base_url = m.base_url, api_key = KEY }))
      local job = assert(c:await(id, { interval = 0.01 }))
      local fields = {}
      for k, v in pairs(job) do
        if type(v) == "string" or type(v) == "number" then fields[#fields + 1] = string.format("[%q] = %q", k, v) end
      end
      return "{ " .. table.concat(fields, ", ") .. " }"
    end
    return ctx
  end

  -- Runs a block's script in dir; returns exit code, stdout, stderr.
  local function run(dir, script)
    write_file(dir .. "/example.lua", script)
    local cmd = string.format("cd %s && env %s VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s timeout 60 %s example.lua "
      .. ">out.txt 2>err.txt </dev/null", q(dir), env, q(m.base_url), KEY, support.interp)
    local rc = sh("(" .. cmd .. ")")
    return rc, read_file(dir .. "/out.txt") or "", read_file(dir .. "/err.txt") or ""
  end

  local function fresh_dir()
    n = n + 1
    local dir = work .. "/" .. n
    os.execute("mkdir -p " .. q(dir))
    local files = mock_server.dir .. "/files/"
    for _, f in ipairs(IMAGES) do os.execute("cp " .. q(files .. "character.png") .. " " .. q(dir .. "/" .. f)) end
    for _, f in ipairs(VIDEOS) do os.execute("cp " .. q(files .. "demo.mp4") .. " " .. q(dir .. "/" .. f)) end
    -- the mock's own files under their checkout path, and a batch manifest
    os.execute("mkdir -p " .. q(dir .. "/spec/mock") .. " " .. q(dir .. "/out") .. " && cp -r " .. q(files) .. " "
      .. q(dir .. "/spec/mock/files"))
    write_file(dir .. "/shots.jsonl",
      '{"key": "shot-1", "ref_image": "dancer.png", "driving_video": "moves.mp4", "output": "out/shot-1.mp4"}\n'
      .. '{"key": "shot-2", "ref_image": "me.png", "driving_video": "dance.mp4", "output": "out/shot-2.mp4"}\n')
    return dir
  end

  it("has examples to run", function()
    assert.is_true(#blocks >= 10, "found " .. #blocks .. " ```lua blocks")
  end)

  for _, b in ipairs(blocks) do
    local title = string.format("README.md:%d runs as written", b.line)
    if b.skip then
      it(string.format("README.md:%d is skipped only for a spec that runs it (%s)", b.line, b.skip), function()
        local path = b.skip:match("runs in (spec/[%w_/%.%-]+%.lua)")
        assert.is_string(path, "the skip comment must say 'runs in spec/....lua'")
        local text = read_file(ROOT .. "/" .. path)
        assert.is_string(text, path .. " does not exist")
        assert.is_truthy(text:find("README.md", 1, true), path .. " does not read README.md")
      end)
    else
      it(title, function()
        m:reset()
        for id in b.code:gmatch('"(job_[%w_]+)"') do m:job({ id = id, advance = "time", step = 0.001 }) end
        local ctx = new_ctx()
        local script = preamble(b.code, ctx)
        local dir = fresh_dir()
        local rc, out, err = run(dir, script)
        assert.are.equal(0, rc, "exit " .. tostring(rc) .. "\n" .. err .. out .. "\n" .. script)
        assert.are.equal("", err, script)
        -- again in the same place (its files now exist): fine, or a clear error
        rc, out, err = run(dir, script)
        if rc ~= 0 then
          assert.is_truthy(err:find("viggle: ", 1, true), "again: exit " .. tostring(rc) .. "\n" .. err .. out)
          assert.is_nil(err:find("attempt to", 1, true), err)
        end
        -- an API that answers 404 to everything: a clear error, never a Lua error
        m:fault({ match = "/api/*", kind = "status", status = 404, body = '{"detail":"Job not found"}', times = -1 })
        m:fault({ match = "/video/*", kind = "status", status = 404, times = -1 })
        rc, out, err = run(fresh_dir(), script)
        if rc ~= 0 then
          assert.is_truthy(err:find("viggle: ", 1, true), "404s: exit " .. tostring(rc) .. "\n" .. err .. out)
          assert.is_nil(err:find("attempt to", 1, true), err)
        end
        assert.is_nil((out .. err):find(KEY, 1, true))
      end)
    end
  end

  it("the download example run twice says the file exists and exits non-zero", function()
    local block
    for _, b in ipairs(blocks) do
      if not b.skip and b.code:find("client:download(job", 1, true) then block = b end
    end
    assert.is_table(block, "README lost its client:download(job, ...) example")
    m:reset()
    local script = preamble(block.code, new_ctx())
    local dir = fresh_dir()
    local rc, _, err = run(dir, script)
    assert.are.equal(0, rc, err)
    assert.are.equal(read_file(mock_server.dir .. "/files/demo.mp4"), read_file(dir .. "/out.mp4"))
    rc, _, err = run(dir, script)
    assert.are.equal(1, rc)
    assert.matches("^viggle: invalid_argument: out%.mp4 exists", err)
  end)

  it("the status example for an unknown job prints the error and exits 1", function()
    local block
    for _, b in ipairs(blocks) do
      if not b.skip and b.code:find("client:status(", 1, true) then block = b break end
    end
    assert.is_table(block, "README lost its client:status example")
    m:reset() -- the mock knows no job now
    local rc, out, err = run(fresh_dir(), preamble(block.code, new_ctx()))
    assert.are.equal(1, rc)
    assert.are.equal("", out)
    assert.matches("^viggle: not_found: ", err)
  end)

  it("the From a checkout paragraph's variables load this checkout's viggle", function()
    local rc, out = sh(string.format("cd / && env %s %s -e %s", env, support.interp,
      q('local v = require("viggle") io.write(package.searchpath and package.searchpath("viggle.core", '
        .. 'package.cpath) or "core", " ", v.VERSION)')))
    assert.are.equal(0, rc, out)
    if support.build ~= "5.1" and support.build ~= "jit" then
      assert.are.equal(support.build_dir() .. "/viggle/core.so", out:match("^(%S+)"))
    end
  end)
end)
