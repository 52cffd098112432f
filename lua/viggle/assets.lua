--- Characters and scenes: the reusable assets of the preprocessed workflow
--- (docs/api.md). `client.characters` and `client.scenes` are small objects
--- bound to their client whose methods live here, loaded on first use. One
--- set of methods serves both kinds; a kind is a follow target
--- (viggle.follow) plus what its create and list look like. Waiting goes
--- through viggle.follow like a render job's; requests through viggle.http.
local errors = require("viggle.errors")
local http = require("viggle.http")
local follow = require("viggle.follow")
local render = require("viggle.render")

local type, pairs, ipairs, error, next = type, pairs, ipairs, error, next
local format, floor = string.format, math.floor
local E = errors.new
local check_opts, check_id, need_key, quote = http.check_opts, http.check_id, http.need_key, http.quote
local D = http.DEFAULTS

local _M = {}

local function bad(msg) return nil, E("invalid_argument", msg) end

-- An answer's fields: at the top level, or (one documented example) inside
-- `data`. `need` is a field the answer must have; where it is missing and a
-- `data` table is there, the fields are read from `data`.
local function unwrap(answer, need)
  if answer[need] == nil and type(answer.data) == "table" then return answer.data end
  return answer
end

-- An asset answer (create, get, a list item, import) made an asset table of
-- kind t: its id under t.key (character_id, scene_id) and under `id`, as
-- both shapes give it. `id`: the id asked for, if any; `need_status`: a
-- status answer must say where it is.
local function as_asset(t, answer, id, need_status)
  local a = answer
  if a[t.key] == nil and a.id == nil and a.status == nil and type(a.data) == "table" then a = a.data end
  local aid = id or a[t.key] or a.id
  if type(aid) ~= "string" or aid == "" then
    return nil, E("decode", format("the %s answer has no %s", t.noun, t.what), { retryable = false })
  end
  if need_status and type(a.status) ~= "string" then
    return nil, E("decode", format("the %s answer has no status field", t.noun), { [t.key] = aid })
  end
  a[t.key] = aid
  if a.id == nil then a.id = aid end
  return a
end

-- The error of a failed asset: its code and message, the asset in err.job.
local function failure(t)
  return function(a, id)
    local code = a.error_code
    if code == nil and type(a.error) == "string" and a.error:find("^CS%-") then code = a.error end
    local msg = a.error_message or a.error
    return E("asset_failed", type(msg) == "string" and msg or (t.noun .. " preprocessing failed"),
      { [t.key] = id, code = type(code) == "string" and code or nil, job = a })
  end
end

-- The two kinds. Each is a viggle.Target (path, what, key, noun, interval,
-- done, check, failure; no cancel: an asset has no cancel) plus `base` (the
-- collection's path), `list` (the list answer's field), `media` (the file
-- and URL fields of its preprocess) and `fields` (what create takes).
local CHARACTER = {
  path = "/api/characters/", base = "/api/characters", list = "characters",
  what = "character id", key = "character_id", noun = "character", done = "ready",
  media = { file = "image", url = "image_url", types = render.IMAGE_TYPES, default = "application/octet-stream" },
  fields = { name = true, image = true, image_url = true },
}
local SCENE = {
  path = "/api/scenes/", base = "/api/scenes", list = "scenes",
  what = "scene id", key = "scene_id", noun = "scene", done = "ready",
  media = { file = "video", url = "video_url", default = "video/mp4" },
  fields = { name = true, video = true, video_url = true, background_mode = true, model = true },
}
for _, t in ipairs({ CHARACTER, SCENE }) do
  t.interval = D.asset_interval
  t.check = function(answer, id) return as_asset(t, answer, id, true) end
  t.failure = failure(t)
end
_M.CHARACTER, _M.SCENE = CHARACTER, SCENE

--- What client:await and await_all follow for a table (or anything not a
--- string): a character (character_id), a scene (scene_id) or a job
--- (job_id), in that order: a character's create answer has a job_id too.
---@param item any
---@return viggle.Target|nil target
---@return string|viggle.Error id_or_err
function _M.resolve(item)
  if type(item) == "table" then
    if item.character_id ~= nil then return CHARACTER, item.character_id end
    if item.scene_id ~= nil then return SCENE, item.scene_id end
    if item.job_id ~= nil then return follow.JOB, item.job_id end
  end
  return nil, E("invalid_argument", format("expected a job id, or a table with job_id, character_id or scene_id; got %s",
    type(item) == "table" and "a table without them" or type(item)))
end

-- The id of an asset of kind t given as an id or as an asset table.
local function id_of(t, x)
  if type(x) == "table" then x = x[t.key] end
  local path, err = check_id(x, t.what)
  if not path then return nil, err end
  return x, path
end

-- ---- the methods of client.characters and client.scenes ------------------------
-- `self` is {client = c}; `self.target` comes from the methods table.

local Assets = {}

-- create's multipart parts, or nil, err: nothing is sent for bad params.
local function preprocess_form(t, p)
  for k in pairs(p) do
    if not t.fields[k] then return bad(format("unknown %s parameter %s", t.noun, quote(k))) end
  end
  if type(p.name) ~= "string" or p.name == "" then return bad(t.noun .. " name must be a non-empty string") end
  local m = t.media
  local file, url = p[m.file], p[m.url]
  if (file == nil) == (url == nil) then
    return bad(format("a %s needs one of %s (a file) or %s, not %s", t.noun, m.file, m.url,
      file == nil and "neither" or "both"))
  end
  local part, err
  if file ~= nil then part, err = render.file_part(m.file, file, m.types, m.default)
  else part, err = render.url_value(m.url, url) end
  if not part then return nil, err end
  local form = { { name = "name", value = p.name }, part }
  if p.background_mode ~= nil then
    if not render.BACKGROUND[p.background_mode] then
      return bad("background_mode must be original, solid, transparent or inpaint, got " .. quote(p.background_mode))
    end
    form[#form + 1] = { name = "background_mode", value = p.background_mode }
  end
  if p.model ~= nil then
    if not render.MODELS[p.model] then return bad("model must be V4_Preview or V3_Preview, got " .. quote(p.model)) end
    form[#form + 1] = { name = "model", value = p.model }
  end
  return form
end

--- POST {base}/preprocess: makes a character (name, image or image_url) or a
--- scene (name, video or video_url, background_mode, model). The new asset
--- ({character_id|scene_id, id, job_id, status = "pending", enqueued_at}), or
--- nil, err. Retried only when it surely never reached the server.
---@param params table
---@param opts {timeout: number?, retries: integer?}|nil
---@return table|nil asset
---@return viggle.Error|nil err
function Assets:create(params, opts)
  local t = self.target
  if type(params) ~= "table" then error("bad argument #1 to 'create' (table expected)", 2) end
  opts = check_opts(opts, "create")
  local err = need_key(self.client)
  if err then return nil, err end
  local form
  form, err = preprocess_form(t, params)
  if not form then return nil, err end
  local answer
  answer, err = http.post(self.client, { path = t.base .. "/preprocess", form = form, timeout = opts.timeout },
    opts.retries)
  if not answer then return nil, err end
  return as_asset(t, answer)
end

-- get and delete: the id checked, the key, then `send(client, path, opts)`
-- on {path}{id}; an error names the asset. The answer and the id, or nil, err.
local function on_one(self, id, opts, send)
  local t = self.target
  local path
  id, path = id_of(t, id)
  if not id then return nil, path end
  local err = need_key(self.client)
  if err then return nil, err end
  local answer
  answer, err = send(self.client, t.path .. path, opts)
  if not answer then
    err[t.key] = id
    return nil, err
  end
  return answer, id
end

--- GET {path}{id}: the asset (every field of the answer; `status` is pending,
--- processing, ready or failed), or nil, err.
---@param id string|table an id, or an asset table
---@param opts {timeout: number?, retries: integer?}|nil
---@return table|nil asset
---@return viggle.Error|nil err
function Assets:get(id, opts)
  local answer, aid = on_one(self, id, check_opts(opts, "get"), function(c, path, o)
    return http.api_with_retries(c, { path = path, timeout = o.timeout }, o.retries)
  end)
  if not answer then return nil, aid end
  return as_asset(self.target, answer, aid, true)
end

local function whole(v, lo, hi)
  return type(v) == "number" and v == floor(v) and v >= lo and (not hi or v <= hi)
end

--- GET {base}?limit=&offset=: one page, {characters|scenes = {asset...},
--- total = N}, or nil, err. limit 1-100, offset 0 or more.
---@param opts {limit: integer?, offset: integer?, timeout: number?, retries: integer?}|nil
---@return table|nil page
---@return viggle.Error|nil err
function Assets:list(opts)
  local t = self.target
  opts = check_opts(opts, "list")
  if opts.limit ~= nil and not whole(opts.limit, 1, 100) then
    return bad("limit must be a whole number from 1 to 100, got " .. quote(opts.limit))
  end
  if opts.offset ~= nil and not whole(opts.offset, 0) then
    return bad("offset must be a whole number, 0 or more, got " .. quote(opts.offset))
  end
  local err = need_key(self.client)
  if err then return nil, err end
  local query = {}
  if opts.limit then query[#query + 1] = format("limit=%d", opts.limit) end
  if opts.offset then query[#query + 1] = format("offset=%d", opts.offset) end
  local path = t.base .. (#query > 0 and "?" .. table.concat(query, "&") or "")
  local answer
  answer, err = http.api_with_retries(self.client, { path = path, timeout = opts.timeout }, opts.retries)
  if not answer then return nil, err end
  local page = unwrap(answer, t.list)
  local items = page[t.list]
  if type(items) ~= "table" or (next(items) ~= nil and items[1] == nil) then
    return nil, E("decode", format("the %s list answer has no %s array", t.noun, t.list), { retryable = true })
  end
  for i, item in ipairs(items) do
    if type(item) ~= "table" then return nil, E("decode", format("the %s list holds a %s", t.noun, type(item))) end
    items[i], err = as_asset(t, item)
    if not items[i] then return nil, err end
  end
  if type(page.total) ~= "number" then page.total = nil end
  return page
end

--- An iterator over every asset, a page at a time, fetched only when the
--- loop gets there: `for asset, err in client.characters:each() do`. A failed
--- page gives `false, err` once and ends the loop.
---@param opts {limit: integer?, offset: integer?, timeout: number?, retries: integer?}|nil limit = page size (default 100)
---@return fun(): table|false|nil, viggle.Error|nil
function Assets:each(opts)
  opts = check_opts(opts, "each")
  local t = self.target
  local limit, offset = opts.limit or 100, opts.offset or 0
  local items, i, last = {}, 0, false
  return function()
    if i >= #items then
      if last then return nil end
      local page, err = self:list({ limit = limit, offset = offset, timeout = opts.timeout, retries = opts.retries })
      if not page then
        last = true
        return false, err
      end
      items, i = page[t.list], 0
      offset = offset + #items
      last = #items < limit or (page.total ~= nil and offset >= page.total)
      if #items == 0 then return nil end
    end
    i = i + 1
    return items[i]
  end
end

--- DELETE {path}{id}: the answer ({success = true}), or nil, err.
---@param id string|table an id, or an asset table
---@param opts {timeout: number?}|nil
---@return table|nil answer
---@return viggle.Error|nil err
function Assets:delete(id, opts)
  local answer, err = on_one(self, id, check_opts(opts, "delete"), function(c, path, o)
    return http.api(c, { method = "DELETE", path = path, timeout = o.timeout, empty_ok = true })
  end)
  if not answer then return nil, err end
  return unwrap(answer, "success")
end

--- Follows an asset until it is ready (the asset), or nil, err: asset_failed
--- (its code and message), timeout, callback, or an error that cannot get
--- better. The options of client:await; interval defaults to 5 s.
---@param id string|table an id, or an asset table
---@param opts viggle.AwaitOptions|nil
---@return table|nil asset
---@return viggle.Error|nil err
function Assets:await(id, opts)
  local t = self.target
  opts = check_opts(opts, "await")
  if type(id) == "table" then id = id[t.key] end
  return follow.await(self.client, id, opts, t)
end

_M.Characters = setmetatable({ target = CHARACTER }, { __index = Assets })
_M.Scenes = setmetatable({ target = SCENE }, { __index = Assets })

--- POST /api/scenes/import (a JSON body): a scene from a template,
--- {scene_id, id, status, credits_reserved, segments = {{uuid, type}...}},
--- or nil, err. Retried only when it surely never reached the server.
---@param params {template_id: string, name: string}
---@param opts {timeout: number?, retries: integer?}|nil
---@return table|nil scene
---@return viggle.Error|nil err
function _M.Scenes:import(params, opts)
  if type(params) ~= "table" then error("bad argument #1 to 'import' (table expected)", 2) end
  opts = check_opts(opts, "import")
  for k in pairs(params) do
    if k ~= "template_id" and k ~= "name" then return bad("unknown import parameter " .. quote(k)) end
  end
  for _, k in ipairs({ "template_id", "name" }) do
    if type(params[k]) ~= "string" or params[k] == "" then return bad(k .. " must be a non-empty string") end
  end
  local err = need_key(self.client)
  if err then return nil, err end
  local body = require("cjson.safe").encode({ template_id = params.template_id, name = params.name })
  local answer
  answer, err = http.post(self.client, { path = "/api/scenes/import", body = body,
                                         content_type = "application/json", timeout = opts.timeout }, opts.retries)
  if not answer then return nil, err end
  return as_asset(SCENE, answer)
end

-- ---- client:run's first step ------------------------------------------------------

local function take(p, t, short)
  local v = p[short]
  if v == nil then return true end
  if p[t.key] ~= nil then return bad(format("give %s or %s, not both", short, t.key)) end
  local id, err = id_of(t, v)
  if not id then return nil, err end
  p[short], p[t.key] = nil, id
  return true
end

--- The render parameters of client:run with its character and scene (and
--- the characters of a character_mapping) ready: `character` and `scene`
--- (an asset table or an id) become character_id and scene_id, and every
--- asset named is followed until ready, all at once. Returns the parameters
--- for client:render, or nil, err: the first asset that failed, or could not
--- be followed (nothing has been rendered, nothing paid for).
---@param c viggle.Client
---@param params table client:run's parameters
---@param opts table client:run's options (interval, timeout, max_backoff, on_asset)
---@return table|nil params
---@return viggle.Error|nil err
function _M.ready_params(c, params, opts)
  if type(params) ~= "table" then error("bad argument #1 to 'run' (table expected)", 3) end
  local p = {}
  for k, v in pairs(params) do p[k] = v end
  local ok, err = take(p, CHARACTER, "character")
  if ok then ok, err = take(p, SCENE, "scene") end
  if not ok then return nil, err end
  local items = {}
  if p.character_id ~= nil then items[1] = { character_id = p.character_id } end
  if p.scene_id ~= nil then items[#items + 1] = { scene_id = p.scene_id } end
  local mapping = p.character_mapping
  if type(mapping) == "string" then mapping = require("viggle.core").decode(mapping) end
  if type(mapping) == "table" then
    for _, char in pairs(mapping) do
      if type(char) == "string" then items[#items + 1] = { character_id = char } end
    end
  end
  if #items == 0 then return p end
  err = need_key(c)
  if err then return nil, err end
  local results = follow.await_all(c, items, {
    interval = opts.interval, timeout = opts.timeout, max_backoff = opts.max_backoff, on_progress = opts.on_asset,
  }, _M.resolve)
  for _, r in ipairs(results) do
    if errors.is(r) then return nil, r end
  end
  return p
end

return _M
