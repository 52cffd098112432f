--- `viggle characters ...` and `viggle scenes ...`: the CLI of the reusable
--- assets (viggle.assets), loaded by viggle.cli when one of them is asked for.
--- The parsing, errors, JSON and the progress display are viggle.cli's.
local stdout = io.stdout
local format = string.format

local _M = {}

local COMMON = { json = false }
local WAIT = { interval = "number", timeout = "number", rate = "number" }

-- The options of each subcommand; parse takes their union (OPTIONS below).
local SUBCOMMANDS = {
  characters = {
    list = { limit = "number", offset = "number", all = false },
    get = {},
    create = { name = "string", image = "string", ["image-url"] = "string", wait = false },
    delete = {},
    wait = {},
  },
  scenes = {
    list = { limit = "number", offset = "number", all = false },
    get = {},
    create = { name = "string", video = "string", ["video-url"] = "string", background = "string",
               model = "string", wait = false },
    import = { template = "string", name = "string", wait = false },
    delete = {},
    wait = {},
  },
}
local WAITS = { create = true, import = true, wait = true }

_M.OPTIONS = {}
for cmd, subs in pairs(SUBCOMMANDS) do
  local all = {}
  for sub, spec in pairs(subs) do
    for k, v in pairs(spec) do all[k] = v end
    for k, v in pairs(COMMON) do spec[k] = v end
    if WAITS[sub] then for k, v in pairs(WAIT) do spec[k] = v all[k] = v end end
  end
  for k, v in pairs(COMMON) do all[k] = v end
  _M.OPTIONS[cmd] = all
end

local KEYS = { characters = "character_id", scenes = "scene_id" }
local FIELDS = {
  characters = { "status", "name", "job_id", "thumbnail_url", "error", "error_message", "credits_used",
                 "created_at", "completed_at" },
  scenes = { "status", "name", "duration_seconds", "fps", "total_frames", "width", "height", "model", "job_id",
             "error_message", "credits_used", "credits_reserved", "created_at", "completed_at" },
}

local function show(cli, cmd, asset, opts)
  if opts.json then
    stdout:write(cli.to_json(asset), "\n")
    return
  end
  cli.print_job(asset, KEYS[cmd], FIELDS[cmd])
  for _, seg in ipairs(type(asset.segments) == "table" and asset.segments or {}) do
    stdout:write(format("  segment:      %s (%s)\n", tostring(seg.uuid), tostring(seg.type)))
  end
end

local function row(cmd, a)
  return format("%-24s %-11s %s\n", tostring(a[KEYS[cmd]]), tostring(a.status), tostring(a.name or ""))
end

local function list(cli, cmd, c, opts)
  local set = c[cmd]
  if opts.all then
    for a, err in set:each({ limit = opts.limit }) do
      if not a then return cli.fail(err) end
      stdout:write(opts.json and (cli.to_json(a) .. "\n") or row(cmd, a))
    end
    return cli.EXIT.ok
  end
  local page, err = set:list({ limit = opts.limit, offset = opts.offset })
  if not page then return cli.fail(err) end
  if opts.json then
    stdout:write(cli.to_json(page), "\n")
    return cli.EXIT.ok
  end
  for _, a in ipairs(page[cmd]) do stdout:write(row(cmd, a)) end
  local from, n = (opts.offset or 0) + 1, #page[cmd]
  local shown = n > 0 and format("%d-%d", from, from + n - 1) or "none"
  io.stderr:write(format("%s of %s %s\n", shown, tostring(page.total or "?"), cmd))
  return cli.EXIT.ok
end

-- A new asset: its id (or the JSON), then with --wait the wait.
local function made(cli, cmd, c, asset, err, opts)
  if not asset then return cli.fail(err) end
  local id = asset[KEYS[cmd]]
  if not opts.wait then
    if opts.json then stdout:write(cli.to_json(asset), "\n") else stdout:write(id, "\n") end
    return cli.EXIT.ok
  end
  if not opts.json then stdout:write("started ", id, "\n") end
  return (cli.wait_jobs(c, { id }, opts, KEYS[cmd]))
end

local function create(cli, cmd, c, opts)
  local params = { name = opts.name }
  if cmd == "characters" then
    params.image, params.image_url = opts.image, opts["image-url"]
  else
    params.video, params.video_url = opts.video, opts["video-url"]
    params.background_mode, params.model = opts.background, opts.model
  end
  local asset, err = c[cmd]:create(params)
  return made(cli, cmd, c, asset, err, opts)
end

--- Runs `viggle CMD SUB ...` (CMD characters or scenes); the exit code.
---@param cli table viggle.cli (its shared helpers)
---@param cmd string
---@param opts table parsed with OPTIONS[cmd]
---@param pos string[] SUB and its arguments
---@return integer exit code
function _M.run(cli, cmd, opts, pos)
  local sub = table.remove(pos, 1)
  local spec = SUBCOMMANDS[cmd][sub]
  if not spec then
    return cli.usage_error(sub and format("unknown %s command '%s'", cmd, sub) or cmd .. " needs a command", cmd)
  end
  for k in pairs(opts) do
    if spec[k] == nil then return cli.usage_error(format("%s %s takes no --%s", cmd, sub, k), cmd) end
  end
  local want = (sub == "get" and 1) or ((sub == "delete" or sub == "wait") and "some") or 0
  if (want == 1 and #pos ~= 1) or (want == "some" and #pos == 0) or (want == 0 and #pos > 0) then
    local what = want == 0 and "no arguments" or want == 1 and "one ID" or "at least one ID"
    return cli.usage_error(format("%s %s takes %s", cmd, sub, what), cmd)
  end
  local c, code = cli.client_or_fail()
  if not c then return code end
  if sub == "list" then return list(cli, cmd, c, opts) end
  if sub == "create" then return create(cli, cmd, c, opts) end
  if sub == "import" then
    local asset, err = c:import_scene({ template_id = opts.template, name = opts.name })
    return made(cli, cmd, c, asset, err, opts)
  end
  if sub == "wait" then return (cli.wait_jobs(c, pos, opts, KEYS[cmd])) end
  if sub == "get" then
    local asset, err = c[cmd]:get(pos[1])
    if not asset then return cli.fail(err) end
    show(cli, cmd, asset, opts)
    return cli.EXIT.ok
  end
  local worst = cli.EXIT.ok -- delete ID...
  for _, id in ipairs(pos) do
    local res, err = c[cmd]:delete(id)
    if res then
      if opts.json then stdout:write(cli.to_json({ [KEYS[cmd]] = id, success = res.success }), "\n")
      else stdout:write("deleted ", id, "\n") end
    else
      worst = cli.fail(err)
    end
  end
  return worst
end

return _M
