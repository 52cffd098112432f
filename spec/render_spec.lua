-- The render workflow: render (multipart), cancel, download, run, against the mock.
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")

local FILES = "spec/mock/files/"

local support = require("spec.support")
local read = support.read_file

local md5_of = support.md5

describe("the render workflow", function()
  local m, c, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/spec-files"
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/dancer.png", "wb"))
    f:write("\137PNG\r\n\26\n" .. ("pixel"):rep(2000))
    f:close()
    f = assert(io.open(dir .. "/empty.mp4", "wb"))
    f:close()
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ render_job = { advance = "poll" } })
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
    os.remove(dir .. "/out.mp4")
    os.remove(dir .. "/out.mp4.part")
  end)

  local function api(method)
    local out = {}
    for _, r in ipairs(m:log()) do
      if r.server ~= "cdn" and (not method or r.method == method) then out[#out + 1] = r end
    end
    return out
  end
  local function cdn()
    local out = {}
    for _, r in ipairs(m:log()) do if r.server == "cdn" then out[#out + 1] = r end end
    return out
  end

  describe("client:render", function()
    it("uploads both files as multipart, streamed, with every field", function()
      local job = assert(c:render({
        ref_image = dir .. "/dancer.png", driving_video = FILES .. "demo.mp4",
        model = "V3_Preview", background_mode = "solid", bg_color = { 10, 20, 30 }, fast = true,
      }))
      assert.matches("^job_", job.job_id)
      assert.are.equal("queued", job.status)
      assert.are.equal("fast", job.mode)
      assert.is_string(job.enqueued_at)
      local post = api("POST")[1]
      assert.are.equal("/api/render", post.uri)
      assert.are.equal("Bearer sk-test-valid", post.headers.authorization)
      assert.matches("^multipart/form%-data; boundary=", post.headers["content-type"])
      local form = post.form
      assert.are.equal("dancer.png", form.ref_image.filename)
      assert.are.equal("image/png", form.ref_image.content_type)
      assert.are.equal(md5_of(dir .. "/dancer.png"), form.ref_image.md5)
      assert.are.equal("demo.mp4", form.driving_video.filename)
      assert.are.equal("video/mp4", form.driving_video.content_type)
      assert.are.equal(#read(FILES .. "demo.mp4"), form.driving_video.size)
      assert.are.equal(md5_of(FILES .. "demo.mp4"), form.driving_video.md5)
      assert.are.equal("V3_Preview", form.model.value)
      assert.are.equal("solid", form.background_mode.value)
      assert.are.equal("10,20,30", form.bg_color.value)
      assert.are.equal("true", form.fast.value)
      -- the new job is real: it can be followed
      assert.are.equal("complete", assert(c:await(job.job_id, { interval = 0.01 })).status)
    end)

    it("sends URLs, ids, a mapping table as JSON, and a colour string", function()
      local job = assert(c:render({
        ref_image_url = "https://example.invalid/a.png", driving_video_url = "https://example.invalid/b.mp4",
        character_mapping = { ["seg-1"] = "char_1" }, bg_color = "255, 255,255", background_mode = "transparent",
      }))
      assert.are.equal("preprocessed", job.mode)
      local form = api("POST")[1].form
      assert.are.equal("https://example.invalid/a.png", form.ref_image_url.value)
      assert.are.equal("https://example.invalid/b.mp4", form.driving_video_url.value)
      assert.are.same({ ["seg-1"] = "char_1" }, core.decode(form.character_mapping.value))
      assert.are.equal("255,255,255", form.bg_color.value)
      assert(c:render({ character_id = "char_1", scene_id = "scene_1", character_mapping = '{"s":"c"}' }))
      form = api("POST")[2].form
      assert.are.equal("char_1", form.character_id.value)
      assert.are.equal("scene_1", form.scene_id.value)
      assert.are.equal('{"s":"c"}', form.character_mapping.value)
    end)

    describe("refuses bad parameters before sending anything", function()
      local cases = {
        { { ref_image = "/nonexistent/x.png", scene_id = "s" }, "/nonexistent/x.png" },
        { { ref_image = "EMPTY", scene_id = "s" }, "empty" },
        { { ref_image = "DIR", scene_id = "s" }, "cannot read" },
        { { character_id = "c", scene_id = "s", background_mode = "blurry" }, "background_mode" },
        { { character_id = "c", scene_id = "s", model = "V5" }, "model" },
        { { character_id = "c", scene_id = "s", bg_color = { 1, 2, 300 } }, "0 to 255" },
        { { character_id = "c", scene_id = "s", bg_color = "1,2" }, "bg_color" },
        { { character_id = "c", scene_id = "s", fast = "yes" }, "fast" },
        { { character_id = "c", scene_id = "s", character_mapping = "{not json" }, "character_mapping" },
        { { character_id = "c", scene_id = "s", character_mapping = { 1, 2 } }, "character_mapping" },
        { { ref_image_url = "file:///etc/passwd", scene_id = "s" }, "http(s) URL" },
        { { character_id = "c", scene_id = "s", colour = "red" }, "unknown render parameter" },
        { {}, "render needs" },
      }
      for i, case in ipairs(cases) do
        it(case[2] .. " (" .. i .. ")", function()
          local p = {}
          for k, v in pairs(case[1]) do p[k] = v end
          if p.ref_image == "EMPTY" then p.ref_image = dir .. "/empty.mp4" end
          if p.ref_image == "DIR" then p.ref_image = dir end
          local job, err = c:render(p)
          assert.is_nil(job)
          assert.are.equal("invalid_argument", err.kind)
          assert.truthy(err.message:find(case[2], 1, true), err.message)
          assert.are.equal(0, #api())
        end)
      end
    end)

    it("reports a missing key as auth before sending", function()
      local anon = assert(viggle.new({ base_url = m.base_url, api_key = "" }))
      local _, err = anon:render({ character_id = "c", scene_id = "s" })
      assert.are.equal("auth", err.kind)
      assert.are.equal(0, #api())
    end)

    describe("reports each documented API error", function()
      local cases = {
        { "sk-test-expired", { character_id = "c", scene_id = "s" }, "auth", 401, "CS-UORC01-007" },
        { "sk-test-broke", { character_id = "c", scene_id = "s" }, "credits", 402, "CS-UORC01-008" },
        { nil, { driving_video_url = "https://example.invalid/v.mp4" }, "api", 400, "CS-ORIV-001" },
        { nil, { ref_image_url = "https://example.invalid/i.png" }, "api", 400, "CS-ORIV-002" },
        { nil, { character_id = "char_missing", scene_id = "s" }, "api", 400, "CS-ORIV-008" },
        { nil, { character_id = "c", scene_id = "scene_missing" }, "api", 400, "CS-ORIV-009" },
        { nil, { character_id = "c", scene_id = "scene_pending" }, "api", 400, "CS-ORIV-010" },
      }
      for _, case in ipairs(cases) do
        it(case[5], function()
          local cl = assert(viggle.new({ base_url = m.base_url, api_key = case[1] or "sk-test-valid" }))
          local job, err = cl:render(case[2])
          assert.is_nil(job)
          assert.are.equal(case[3], err.kind)
          assert.are.equal(case[4], err.status)
          assert.are.equal(case[5], err.code)
          assert.is_string(err.message)
          assert.is_false(err.retryable)
        end)
      end
      it("CS-UORC01-006 (missing key, detail as a string) when the server sees no key", function()
        m:config({ keys = {} })
        local _, err = c:render({ character_id = "c", scene_id = "s" })
        assert.are.equal("auth", err.kind)
        assert.are.equal(401, err.status)
      end)
      it("CS-UORC01-001 when fast mode is busy", function()
        m:config({ fast_busy = true })
        local _, err = c:render({ character_id = "c", scene_id = "s", fast = true })
        assert.are.equal("api", err.kind)
        assert.are.equal("CS-UORC01-001", err.code)
      end)
    end)

    it("never repeats a POST that may have reached the server", function()
      m:fault({ match = "/api/render", method = "POST", kind = "drop" })
      local _, err = c:render({ character_id = "c", scene_id = "s" })
      assert.are.equal("network", err.kind)
      assert.are.equal(1, #api("POST"))
      m:reset()
      m:fault({ match = "/api/render", method = "POST", kind = "status", status = 500 })
      _, err = c:render({ character_id = "c", scene_id = "s" })
      assert.are.equal(500, err.status)
      assert.are.equal(1, #api("POST"))
    end)

    it("retries a 429 or 503 that says when to come back", function()
      m:fault({ match = "/api/render", method = "POST", kind = "status", status = 429, retry_after = "1" })
      local t0 = core.now()
      local job = assert(c:render({ character_id = "c", scene_id = "s" }))
      assert.is_true(core.now() - t0 >= 0.95)
      assert.matches("^job_", job.job_id)
      assert.are.equal(2, #api("POST"))
    end)
  end)

  describe("client:cancel", function()
    it("cancels with DELETE and the key; the job then reads cancelled", function()
      local id = m:job({ id = "job_x", outcome = "stuck" })
      local res = assert(c:cancel(id))
      assert.is_true(res.success)
      local del = api("DELETE")[1]
      assert.are.equal("/api/render/job_x", del.uri)
      assert.are.equal("Bearer sk-test-valid", del.headers.authorization)
      assert.are.equal("cancelled", assert(c:status(id)).status)
    end)
    it("accepts an empty 204", function()
      m:config({ cancel_empty = true })
      local id = m:job({ id = "job_y", outcome = "stuck" })
      assert.are.same({}, assert(c:cancel(id)))
    end)
    it("reports an unknown job, and refuses a bad id or a missing key locally", function()
      local _, err = c:cancel("job_none")
      assert.are.equal("not_found", err.kind)
      _, err = c:cancel("../x")
      assert.are.equal("invalid_argument", err.kind)
      local anon = assert(viggle.new({ base_url = m.base_url, api_key = "" }))
      _, err = anon:cancel("job_none")
      assert.are.equal("auth", err.kind)
      assert.are.equal(1, #api())
    end)
  end)

  describe("client:download", function()
    local function finished_job(opts)
      local id = m:job(opts or { id = "job_dl" })
      return assert(c:await(id, { interval = 0.001 }))
    end

    it("streams the video to disk, never sending the key to the CDN", function()
      local job = finished_job()
      local seen = {}
      local path, info = c:download(job, dir .. "/out.mp4", { on_progress = function(b, t)
        seen[#seen + 1] = { b, t }
      end })
      assert.are.equal(dir .. "/out.mp4", path)
      assert.are.equal(read(FILES .. "demo.mp4"), read(path))
      assert.are.equal(#read(FILES .. "demo.mp4"), info.bytes)
      assert.is_nil(io.open(path .. ".part"))
      assert.are.same({ info.bytes, info.bytes }, seen[#seen])
      local get = cdn()[1]
      assert.are.equal("/video/job_dl.mp4", get.uri)
      assert.is_nil(get.headers.authorization)
    end)

    it("fetches the mask of a transparent render, and refuses when there is none", function()
      local job = finished_job({ id = "job_tr", transparent = true })
      assert(c:download(job, dir .. "/out.mp4", { mask = true }))
      assert.are.equal(read(FILES .. "mask.mp4"), read(dir .. "/out.mp4"))
      local plain = finished_job({ id = "job_plain" })
      local _, err = c:download(plain, dir .. "/other.mp4", { mask = true })
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("mask_cdn_url", err.message)
    end)

    it("takes a job id, and keeps an existing file unless overwrite", function()
      finished_job({ id = "job_byid" })
      assert(c:download("job_byid", dir .. "/out.mp4"))
      local _, err = c:download("job_byid", dir .. "/out.mp4")
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("exists", err.message)
      assert(c:download("job_byid", dir .. "/out.mp4", { overwrite = true }))
    end)

    it("refuses a job that has no video yet, and URLs that are not http(s)", function()
      local id = m:job({ id = "job_early" })
      local _, err = c:download(id, dir .. "/out.mp4")
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("queued", err.message)
      for _, u in ipairs({ "file:///etc/passwd", "ftp://h/x.mp4", "gopher://h/x" }) do
        _, err = c:download({ job_id = "j", status = "complete", cdn_url = u }, dir .. "/out.mp4")
        assert.are.equal("invalid_argument", err.kind)
      end
      assert.is_nil(io.open(dir .. "/out.mp4"))
      assert.are.equal(0, #cdn())
    end)

    it("keeps the .part of a cut download and resumes it with Range", function()
      local job = finished_job()
      m:fault({ match = "/video/*", kind = "truncated", sent = 1000 })
      local _, err = c:download(job, dir .. "/out.mp4")
      assert.are.equal("network", err.kind)
      assert.is_nil(io.open(dir .. "/out.mp4"))
      assert.are.equal(1000, #read(dir .. "/out.mp4.part"))
      assert(c:download(job, dir .. "/out.mp4"))
      assert.are.equal(read(FILES .. "demo.mp4"), read(dir .. "/out.mp4"))
      local second = cdn()[2]
      assert.are.equal("bytes=1000-", second.headers.range)
      assert.are.equal(206, second.status)
    end)

    it("gets a fresh link once when the job's link has expired", function()
      m:config({ cdn_ttl = -10 })
      local job = finished_job({ id = "job_exp" })
      m:config({ cdn_ttl = 3600 })
      assert(c:download(job, dir .. "/out.mp4"))
      local gets = cdn()
      assert.are.equal(403, gets[1].status)
      assert.are.equal(200, gets[2].status)
      m:config({ cdn_ttl = -10 })
      local _, err = c:download(job, dir .. "/other.mp4")
      assert.are.equal("http", err.kind)
      assert.are.equal(403, err.status)
      assert.matches("expired", err.message)
    end)

    it("ends with kind callback when on_progress raises", function()
      local job = finished_job()
      local _, err = c:download(job, dir .. "/out.mp4", { on_progress = function() error("stop it") end })
      assert.are.equal("callback", err.kind)
      assert.is_nil(io.open(dir .. "/out.mp4"))
    end)
  end)

  it("client:run renders, waits and downloads in one call", function()
    m:config({ render_job = { advance = "time", step = 0.05 } })
    local changes = 0
    local job, path = c:run({ ref_image = dir .. "/dancer.png", driving_video = FILES .. "demo.mp4" },
      { interval = 0.02, output = dir .. "/out.mp4", on_progress = function() changes = changes + 1 end })
    assert.is_table(job, tostring(path))
    assert.are.equal("complete", job.status)
    assert.are.equal(dir .. "/out.mp4", path)
    assert.are.equal(read(FILES .. "demo.mp4"), read(path))
    assert.is_true(changes >= 2)
  end)
end)
