-- Characters and scenes (client.characters, client.scenes, client:import_scene),
-- waiting for them, client:run with assets, and the mock's asset endpoints.
local viggle = require("viggle")
local cjson = require("cjson")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local FILES = "spec/mock/files/"
local KEY = "sk-test-valid"

describe("reusable assets", function()
  local m, c, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/spec-files"
    os.execute("mkdir -p " .. dir)
    support.write_file(dir .. "/empty.png", "")
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ asset_job = { advance = "poll" }, render_job = { advance = "poll" } })
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 5 }))
  end)

  -- the API requests the mock saw (optionally one method, or one path prefix)
  local function api(method, prefix)
    local out = {}
    for _, r in ipairs(m:log()) do
      if r.server == "api" and (not method or r.method == method)
         and (not prefix or r.uri:sub(1, #prefix) == prefix) then
        out[#out + 1] = r
      end
    end
    return out
  end

  -- both documented answer shapes: fields at the top level, and inside "data"
  for _, shape in ipairs({ "top-level", "data-wrapped" }) do
    describe("(" .. shape .. " answers)", function()
      before_each(function()
        if shape == "data-wrapped" then m:config({ asset_wrap = true }) end
      end)

      it("characters:create uploads the image as multipart and charges a credit", function()
        local before = assert(c:credits()).balance
        local ch = assert(c.characters:create({ name = "Ada", image = FILES .. "character.png" }))
        assert.matches("^char_", ch.character_id)
        assert.are.equal(ch.character_id, ch.id)
        assert.are.equal("pending", ch.status)
        assert.matches("^job_", ch.job_id)
        assert.is_string(ch.enqueued_at)
        local post = api("POST")[1]
        assert.are.equal("/api/characters/preprocess", post.uri)
        assert.are.equal("Bearer " .. KEY, post.headers.authorization)
        assert.are.equal("Ada", post.form.name.value)
        assert.are.equal("character.png", post.form.image.filename)
        assert.are.equal("image/png", post.form.image.content_type)
        assert.are.equal(#support.read_file(FILES .. "character.png"), post.form.image.size)
        assert.are.equal(before - 1, assert(c:credits()).balance)
      end)

      it("characters:create sends an image_url", function()
        local ch = assert(c.characters:create({ name = "Bo", image_url = "https://example.invalid/bo.png" }))
        assert.matches("^char_", ch.character_id)
        local form = api("POST")[1].form
        assert.are.equal("https://example.invalid/bo.png", form.image_url.value)
        assert.is_nil(form.image)
      end)

      it("scenes:create uploads the video with background_mode and model", function()
        local sc = assert(c.scenes:create({ name = "Dance", video = FILES .. "demo.mp4",
                                            background_mode = "solid", model = "V3_Preview" }))
        assert.matches("^scene_", sc.scene_id)
        assert.are.equal("pending", sc.status)
        local post = api("POST")[1]
        assert.are.equal("/api/scenes/preprocess", post.uri)
        assert.are.equal("demo.mp4", post.form.video.filename)
        assert.are.equal("video/mp4", post.form.video.content_type)
        assert.are.equal("solid", post.form.background_mode.value)
        assert.are.equal("V3_Preview", post.form.model.value)
        assert(c.scenes:create({ name = "Url", video_url = "https://example.invalid/d.mp4" }))
        assert.are.equal("https://example.invalid/d.mp4", api("POST")[2].form.video_url.value)
      end)

      it("get follows pending -> processing -> ready, with every field", function()
        local id = m:character({ name = "Cy" })
        local seen = {}
        for i = 1, 3 do seen[i] = assert(c.characters:get(id)).status end
        assert.are.same({ "pending", "processing", "ready" }, seen)
        local ch = assert(c.characters:get(id))
        assert.are.equal(id, ch.character_id)
        assert.are.equal("Cy", ch.name)
        assert.matches("/thumb/", ch.thumbnail_url)
        assert.is_string(ch.completed_at)
        local sid = m:scene({ name = "Sc", outcome = "failed" })
        seen = {}
        for i = 1, 3 do seen[i] = assert(c.scenes:get({ scene_id = sid })).status end
        assert.are.same({ "pending", "pending", "failed" }, seen)
        local sc = assert(c.scenes:get(sid))
        assert.are.equal(1.5, sc.duration_seconds)
        assert.are.equal("Preprocessing failed: no motion detected", sc.error_message)
      end)

      it("list pages with limit and offset and says the total", function()
        local ids = {}
        for i = 1, 5 do ids[i] = m:character({ name = "n" .. i }) end
        local page = assert(c.characters:list({ limit = 2, offset = 1 }))
        assert.are.equal(5, page.total)
        assert.are.equal(2, #page.characters)
        assert.are.equal(ids[2], page.characters[1].character_id)
        assert.are.equal(ids[3], page.characters[2].id)
        local last = api("GET")[1]
        assert.are.equal("limit=2&offset=1", last.args)
        local empty = assert(c.scenes:list())
        assert.are.equal(0, #empty.scenes)
        assert.are.equal(0, empty.total)
      end)

      it("each walks every page, fetching the next only when the loop gets there", function()
        local ids = {}
        for i = 1, 5 do ids[i] = m:scene({ name = "s" .. i }) end
        local got = {}
        for sc, err in c.scenes:each({ limit = 2 }) do
          assert.is_nil(err)
          got[#got + 1] = sc.scene_id
          -- pages of 2: after the 1st item one GET, after the 3rd two, after the 5th three
          assert.are.equal(math.floor((#got + 1) / 2), #api("GET", "/api/scenes"))
        end
        assert.are.same(ids, got)
        assert.are.equal(3, #api("GET", "/api/scenes"))
      end)

      it("delete answers success, and the asset is gone", function()
        local id = m:character({})
        local res = assert(c.characters:delete(id))
        assert.is_true(res.success)
        assert.are.equal("DELETE", api("DELETE")[1].method)
        local ch, err = c.characters:get(id)
        assert.is_nil(ch)
        assert.are.equal("not_found", err.kind)
        assert.are.equal(404, err.status)
        assert.are.equal(id, err.character_id)
        assert.matches("character " .. id, tostring(err))
      end)

      it("import_scene sends a JSON body and gives the segments", function()
        local sc = assert(c:import_scene({ template_id = "tpl_duo", name = "Duo" }))
        assert.matches("^scene_", sc.scene_id)
        assert.are.equal("pending", sc.status)
        assert.are.equal(3, sc.credits_reserved)
        assert.are.equal(2, #sc.segments)
        assert.is_string(sc.segments[1].uuid)
        assert.are.equal("character", sc.segments[1].type)
        local post = api("POST")[1]
        assert.are.equal("/api/scenes/import", post.uri)
        assert.are.equal("application/json", post.headers["content-type"])
        assert.are.same({ template_id = "tpl_duo", name = "Duo" }, cjson.decode(post.body))
        assert.are.equal("ready", assert(c.scenes:await(sc, { interval = 0.01 })).status)
      end)
    end)
  end

  describe("refuses bad input before sending anything", function()
    local cases = {
      { "characters", { image = FILES .. "character.png" }, "name must be a non-empty string" },
      { "characters", { name = "", image = FILES .. "character.png" }, "name must be a non-empty string" },
      { "characters", { name = "a" }, "needs one of image (a file) or image_url, not neither" },
      { "characters", { name = "a", image = FILES .. "character.png", image_url = "https://x/a.png" }, "not both" },
      { "characters", { name = "a", image = "/nonexistent/a.png" }, "/nonexistent/a.png" },
      { "characters", { name = "a", image = "EMPTY" }, "the file is empty" },
      { "characters", { name = "a", image = "DIR" }, "cannot read" },
      { "characters", { name = "a", image_url = "file:///etc/passwd" }, "http(s) URL" },
      { "characters", { name = "a", image_url = "https://x/a.png", model = "V4_Preview" }, "unknown character parameter" },
      { "scenes", { name = "a" }, "needs one of video (a file) or video_url" },
      { "scenes", { name = "a", video = FILES .. "demo.mp4", background_mode = "blurry" }, "background_mode" },
      { "scenes", { name = "a", video = FILES .. "demo.mp4", model = "V5" }, "model must be" },
      { "scenes", { name = "a", video_url = "https://x/a.mp4", colour = "red" }, "unknown scene parameter" },
    }
    for i, case in ipairs(cases) do
      it(case[1] .. ": " .. case[3] .. " (" .. i .. ")", function()
        local p = {}
        for k, v in pairs(case[2]) do p[k] = v end
        if p.image == "EMPTY" then p.image = dir .. "/empty.png" end
        if p.image == "DIR" then p.image = dir end
        local a, err = c[case[1]]:create(p)
        assert.is_nil(a)
        assert.are.equal("invalid_argument", err.kind)
        assert.truthy(err.message:find(case[3], 1, true), err.message)
        assert.are.equal(0, #api())
      end)
    end

    it("a limit out of 1-100, a bad offset, a bad id, a bad import", function()
      for _, o in ipairs({ { limit = 0 }, { limit = 101 }, { limit = 1.5 }, { offset = -1 }, { limit = "5" } }) do
        local page, err = c.characters:list(o)
        assert.is_nil(page)
        assert.are.equal("invalid_argument", err.kind)
      end
      local _, err = c.scenes:get("../render/x")
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("scene id", err.message)
      _, err = c.characters:delete({})
      assert.are.equal("invalid_argument", err.kind)
      _, err = c:import_scene({ template_id = "tpl_1" })
      assert.matches("name must be a non%-empty string", err.message)
      _, err = c:import_scene({ template_id = "tpl_1", name = "x", extra = 1 })
      assert.matches("unknown import parameter", err.message)
      assert.are.equal(0, #api())
      assert.has_error(function() c.characters:create("x") end)
    end)

    it("a missing key is auth, for every call", function()
      local anon = assert(viggle.new({ base_url = m.base_url, api_key = "" }))
      local calls = {
        function() return anon.characters:create({ name = "a", image = FILES .. "character.png" }) end,
        function() return anon.scenes:get("scene_1") end,
        function() return anon.scenes:list() end,
        function() return anon.characters:delete("char_1") end,
        function() return anon:import_scene({ template_id = "t", name = "n" }) end,
        function() return anon:run({ character_id = "char_1", scene_id = "scene_1" }) end,
      }
      for _, call in ipairs(calls) do
        local a, err = call()
        assert.is_nil(a)
        assert.are.equal("auth", err.kind)
      end
      assert.are.equal(0, #api())
    end)
  end)

  describe("reports the API's errors", function()
    it("unknown ids are not_found, for get, delete and await", function()
      local _, err = c.characters:get("char_nope")
      assert.are.equal("not_found", err.kind)
      _, err = c.scenes:delete("scene_nope")
      assert.are.equal("not_found", err.kind)
      assert.are.equal("scene_nope", err.scene_id)
      _, err = c.scenes:await("scene_nope", { interval = 0.01 })
      assert.are.equal("not_found", err.kind)
      _, err = c:import_scene({ template_id = "tpl_missing", name = "x" })
      assert.are.equal("not_found", err.kind)
    end)

    it("an expired key and a broke account", function()
      local expired = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-expired" }))
      local _, err = expired.characters:list()
      assert.are.equal("auth", err.kind)
      assert.are.equal("CS-UORC01-007", err.code)
      local broke = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-broke" }))
      _, err = broke.scenes:create({ name = "a", video = FILES .. "demo.mp4" })
      assert.are.equal("credits", err.kind)
      assert.are.equal(402, err.status)
    end)

    it("a render with a scene not ready, a deleted scene or a deleted character", function()
      local pending = m:scene({ outcome = "stuck" })
      local _, err = c:render({ character_id = "char_x", scene_id = pending })
      assert.are.equal("api", err.kind)
      assert.are.equal("CS-ORIV-010", err.code)
      local gone = m:scene({})
      assert(c.scenes:delete(gone))
      _, err = c:render({ character_id = "char_x", scene_id = gone })
      assert.are.equal("CS-ORIV-009", err.code)
      local ch = m:character({})
      assert(c.characters:delete(ch))
      _, err = c:render({ character_id = ch, scene_id = "scene_x" })
      assert.are.equal("CS-ORIV-008", err.code)
      _, err = c:render({ scene_id = "scene_x", character_mapping = { seg = ch } })
      assert.are.equal("CS-ORIV-008", err.code)
    end)

    it("an answer without the asset's id or status is decode", function()
      m:fault({ match = "/api/characters/preprocess", kind = "status", status = 200, body = '{"status":"pending"}' })
      local _, err = c.characters:create({ name = "a", image_url = "https://x/a.png" })
      assert.are.equal("decode", err.kind)
      local id = m:character({})
      m:fault({ match = "/api/characters/" .. id, kind = "status", status = 200, body = '{"data":{"id":"x"}}' })
      _, err = c.characters:get(id)
      assert.are.equal("decode", err.kind)
      assert.matches("no status", err.message)
      m:fault({ match = "/api/scenes", kind = "status", status = 200, body = '{"total":3}' })
      _, err = c.scenes:list()
      assert.are.equal("decode", err.kind)
    end)

    it("each gives false, err for a failed page and ends", function()
      m:character({})
      m:fault({ match = "/api/characters", kind = "status", status = 404, body = '{"detail":"gone"}' })
      local seen = {}
      for ch, err in c.characters:each() do seen[#seen + 1] = { ch, err } end
      assert.are.equal(1, #seen)
      assert.is_false(seen[1][1])
      assert.are.equal("not_found", seen[1][2].kind)
    end)
  end)

  describe("waiting", function()
    it("await returns the ready asset; a failed one is asset_failed with its code and message", function()
      local ready = assert(c.characters:await(m:character({ name = "R" }), { interval = 0.01 }))
      assert.are.equal("ready", ready.status)
      assert.are.equal("R", ready.name)
      local id = m:character({ outcome = "failed", error_code = "CS-ORIV-007", error_message = "unreadable image" })
      local statuses = {}
      local a, err = c.characters:await(id, { interval = 0.01,
        on_progress = function(x) statuses[#statuses + 1] = x.status end })
      assert.is_nil(a)
      assert.are.equal("asset_failed", err.kind)
      assert.are.equal("CS-ORIV-007", err.code)
      assert.are.equal("unreadable image", err.message)
      assert.are.equal(id, err.character_id)
      assert.are.equal("failed", err.job.status)
      assert.are.same({ "pending", "processing", "failed" }, statuses)
      assert.matches("asset_failed: unreadable image %(CS%-ORIV%-007, character " .. id, tostring(err))
    end)

    it("polls an asset every 5 s by default, and times out with the last asset seen", function()
      local id = m:scene({ outcome = "stuck" })
      local t0 = viggle.now()
      local a, err = c.scenes:await(id, { timeout = 1 })
      assert.is_nil(a)
      assert.are.equal("timeout", err.kind)
      assert.are.equal(id, err.scene_id)
      assert.are.equal("pending", err.job.status)
      assert.matches("scene still running", err.message)
      assert.is_true(viggle.now() - t0 < 3)
      assert.are.equal(1, m:asset_state("scenes", id).polls)
    end)

    it("client:await takes an asset table as well as a job id", function()
      local ch = assert(c.characters:create({ name = "a", image_url = "https://x/a.png" }))
      assert.are.equal("ready", assert(c:await(ch, { interval = 0.01 })).status)
      local _, err = c:await({ name = "no id" })
      assert.are.equal("invalid_argument", err.kind)
    end)

    it("await_all follows jobs, characters and scenes at once, in input order", function()
      local job_id = m:job({})
      local job2 = m:job({ outcome = "failed" })
      local ch = m:character({})
      local bad = m:character({ outcome = "failed" })
      local sc = assert(c.scenes:create({ name = "s", video_url = "https://x/d.mp4" }))
      local results, summary = c:await_all({ job_id, { character_id = ch }, sc, { job_id = job2 }, { scene_id = sc.scene_id },
                                             { character_id = bad }, 42 }, { interval = 0.01 })
      assert.are.equal("complete", results[1].status)
      assert.are.equal(ch, results[2].character_id)
      assert.are.equal("ready", results[2].status)
      assert.are.equal("ready", results[3].status)
      assert.are.equal("job_failed", results[4].kind)
      assert.are.equal(results[3], results[5]) -- one scene, polled once
      assert.are.equal("asset_failed", results[6].kind)
      assert.are.equal("invalid_argument", results[7].kind)
      assert.are.same({ total = 7, complete = 3, failed = 2, cancelled = 0, errors = 1, running = 0 },
        { total = summary.total, complete = summary.complete, failed = summary.failed,
          cancelled = summary.cancelled, errors = summary.errors, running = summary.running })
    end)
  end)

  describe("client:run", function()
    it("waits for a character and a scene still being made, then renders from them", function()
      local ch = assert(c.characters:create({ name = "a", image = FILES .. "character.png" }))
      local sc = assert(c.scenes:create({ name = "s", video = FILES .. "demo.mp4" }))
      local seen = {}
      local job = assert(c:run({ character = ch, scene = sc.scene_id }, { interval = 0.01,
        on_asset = function(a) seen[#seen + 1] = (a.character_id or a.scene_id) .. " " .. a.status end }))
      assert.are.equal("complete", job.status)
      local want = { ch.character_id .. " pending", sc.scene_id .. " pending", ch.character_id .. " processing",
                     ch.character_id .. " ready", sc.scene_id .. " ready" }
      table.sort(want)
      table.sort(seen)
      assert.are.same(want, seen)
      local render = api("POST", "/api/render")
      assert.are.equal(1, #render)
      assert.are.equal(ch.character_id, render[1].form.character_id.value)
      assert.are.equal(sc.scene_id, render[1].form.scene_id.value)
      -- both were ready when the render was asked for
      assert.are.equal("ready", m:asset_state("characters", ch.character_id).view.status)
      assert.are.equal("ready", m:asset_state("scenes", sc.scene_id).view.status)
    end)

    it("waits for a character_id that is not ready yet", function()
      local ch = m:character({})
      local job = assert(c:run({ character_id = ch, scene_id = m:scene({}) }, { interval = 0.01 }))
      assert.are.equal("complete", job.status)
    end)

    it("a failed asset ends the run with its error, and no render is asked for", function()
      local before = api("POST", "/api/render")
      local sc = m:scene({ outcome = "failed" })
      local job, err = c:run({ character = m:character({}), scene = { scene_id = sc } }, { interval = 0.01 })
      assert.is_nil(job)
      assert.are.equal("asset_failed", err.kind)
      assert.are.equal(sc, err.scene_id)
      assert.are.equal(#before, #api("POST", "/api/render"))
      assert.are.equal(0, #api("POST", "/api/render"))
    end)

    it("refuses character together with character_id", function()
      local _, err = c:run({ character = "char_a", character_id = "char_b", scene_id = "s" })
      assert.are.equal("invalid_argument", err.kind)
      assert.are.equal(0, #api())
    end)
  end)

  describe("the mock's asset endpoints", function()
    local function curl(args, path)
      local rc, out = support.sh("curl -sS -w '\\n%{http_code}' -H 'Authorization: Bearer " .. KEY .. "' "
        .. args .. " " .. support.q(m.base_url .. path))
      assert.are.equal(0, rc)
      local body, status = out:match("^(.*)\n(%d+)%s*$")
      return tonumber(status), cjson.decode(body)
    end

    it("refuses a limit out of 1-100 and a bad offset (400 validation)", function()
      for _, q in ipairs({ "limit=0", "limit=101", "limit=x", "offset=-1" }) do
        local status, body = curl("", "/api/characters?" .. q)
        assert.are.equal(400, status)
        assert.are.equal("CS-UORC01-002", body.detail.error_code)
      end
      local status, body = curl("", "/api/scenes?limit=100")
      assert.are.equal(200, status)
      assert.are.equal(0, body.total)
    end)

    it("refuses a preprocess without name or media, and an import that is not JSON", function()
      local status, body = curl("-F image_url=https://x/a.png", "/api/characters/preprocess")
      assert.are.equal(400, status)
      assert.are.equal("CS-UORC01-002", body.detail.error_code)
      status, body = curl("-F name=a", "/api/characters/preprocess")
      assert.are.equal(400, status)
      assert.are.equal("CS-ORIV-001", body.detail.error_code)
      status, body = curl("-F name=a", "/api/scenes/preprocess")
      assert.are.equal(400, status)
      assert.are.equal("CS-ORIV-002", body.detail.error_code)
      status, body = curl("-F name=a -F video_url=https://x/v.mp4 -F background_mode=neon", "/api/scenes/preprocess")
      assert.are.equal(400, status)
      assert.are.equal("CS-ORIV-011", body.detail.error_code)
      status, body = curl("-F template_id=t -F name=n", "/api/scenes/import")
      assert.are.equal(400, status)
      assert.are.equal("CS-UORC01-002", body.detail.error_code)
      status = curl("", "/api/characters/char_nope")
      assert.are.equal(404, status)
      status = curl("-X DELETE", "/api/scenes/scene_nope")
      assert.are.equal(404, status)
      local rc, out = support.sh("curl -sS -o /dev/null -w '%{http_code}' " .. support.q(m.base_url .. "/api/scenes"))
      assert.are.equal(0, rc)
      assert.are.equal("401", out)
    end)

    it("moves time-mode assets on by the clock and charges their credits", function()
      m:config({ asset_job = { advance = "time", step = 0.2 } })
      local status, body = curl("-F name=a -F image_url=https://x/a.png", "/api/characters/preprocess")
      assert.are.equal(200, status)
      local id = body.character_id
      assert.are.equal("pending", body.status)
      support.sleep(0.5)
      status, body = curl("", "/api/characters/" .. id)
      assert.are.equal(200, status)
      assert.are.equal("ready", body.status)
      status, body = curl("", "/api/credits")
      assert.are.equal(200, status)
      assert.are.equal(99, body.balance)
      assert.are.equal(21, body.total_used)
    end)
  end)
end)
