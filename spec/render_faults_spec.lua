-- render and download when the world misbehaves: what is refused before
-- sending, what is (not) sent again, and what is left on disk.
local viggle = require("viggle")
local mock_server = require("spec.mock.server")

local support = require("spec.support")
local read = support.read_file
local VIDEO = support.read_file("spec/mock/files/demo.mp4")

describe("render and download, against faults", function()
  local m, c, dir, out

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/faults"
    os.execute("mkdir -p " .. dir)
    out = dir .. "/out.mp4"
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ render_job = { advance = "poll" } })
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 5 }))
    os.remove(out)
    os.remove(out .. ".part")
  end)

  local function log(server, method)
    local res = {}
    for _, r in ipairs(m:log()) do
      if (r.server == "cdn") == (server == "cdn") and (not method or r.method == method) then res[#res + 1] = r end
    end
    return res
  end
  local function finished(id)
    return assert(c:await(m:job({ id = id or "job_v" }), { interval = 0.001 }))
  end
  local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end

  describe("render", function()
    local ok = { character_id = "c", scene_id = "s" }
    local function with(k, v)
      local p = { character_id = "c", scene_id = "s" }
      p[k] = v
      return p
    end

    it("takes bg_color values 0 to 255, whole, and refuses the rest before sending", function()
      assert(c:render(with("bg_color", { 0, 128, 255 })))
      assert(c:render(with("bg_color", "255,255,255")))
      assert.are.equal(2, #log("api", "POST"))
      for _, bad in ipairs({ { 256, 0, 0 }, "0,256,0", { -1, 0, 0 }, { 12.5, 0, 0 }, "1,2" }) do
        local job, err = c:render(with("bg_color", bad))
        assert.is_nil(job)
        assert.are.equal("invalid_argument", err.kind)
      end
      assert.are.equal(2, #log("api", "POST"))
      assert.are.equal("255,255,255", log("api", "POST")[2].form.bg_color.value)
    end)

    it("does not send a 503 POST again when no Retry-After says it may; a bare 429 (not taken) is, with backoff", function()
      m:reset()
      m:fault({ match = "/api/render", method = "POST", kind = "status", status = 503 })
      local job, err = c:render(ok)
      assert.is_nil(job)
      assert.are.equal(503, err.status)
      assert.are.equal(1, #log("api", "POST"), "POSTs after a 503")
      m:reset()
      m:fault({ match = "/api/render", method = "POST", kind = "status", status = 429 })
      job, err = c:render(ok)
      assert.is_table(job, tostring(err))
      assert.are.equal(2, #log("api", "POST"), "POSTs after a 429")
    end)

    it("sends a POST over a connection of its own, never a reused one", function()
      local id = m:job({ id = "job_first" })
      assert(c:status(id))
      assert(c:status(id))
      assert(c:render(ok))
      local posts, gets = log("api", "POST"), log("api", "GET")
      assert.are.equal(gets[1].connection, gets[2].connection)
      assert.are.equal(1, posts[1].connection_requests)
      assert.are_not.equal(gets[1].connection, posts[1].connection)
    end)
  end)

  describe("download", function()
    it("leaves no .part and no file after an HTTP error", function()
      local job = finished()
      m:fault({ match = "/video/*", kind = "status", status = 500, body = "upstream failed", content_type = "text/plain" })
      local path, err = c:download(job, out)
      assert.is_nil(path)
      assert.are.equal("http", err.kind)
      assert.are.equal(500, err.status)
      assert.matches("upstream failed", err.message) -- the error page, kept apart from the video
      assert.is_false(support.exists(out))
      assert.is_false(support.exists(out .. ".part"))
    end)

    -- a first download cut after 1000 bytes leaves a .part whose validator is on record
    local function cut_part(job)
      m:fault({ match = "/video/*", kind = "truncated", sent = 1000 })
      local _, err = c:download(job, out)
      assert.are.equal("network", err.kind)
      assert.are.equal(1000, #read(out .. ".part"))
    end

    it("refuses a resumed download whose length is not the announced one", function()
      local job = finished()
      cut_part(job)
      m:fault({ match = "/video/*", kind = "status", status = 206, body = ("x"):rep(500), content_type = "video/mp4",
                headers = { ["Content-Range"] = "bytes 1000-1499/99999" } })
      local path, err = c:download(job, out)
      assert.is_nil(path)
      assert.are.equal("network", err.kind)
      assert.matches("1500 of 99999", err.message)
      assert.is_false(support.exists(out))
    end)

    it("gets a fresh link when the CDN answers 404 for an expired one", function()
      local job = finished("job_404")
      m:fault({ match = "/video/job_404.mp4", kind = "status", status = 404 })
      assert(c:download(job, out))
      assert.are.equal(VIDEO, read(out))
      local gets = log("cdn")
      assert.are.equal(404, gets[1].status)
      assert.are.equal(200, gets[2].status)
    end)

    it("starts over when the .part is longer than the video (416)", function()
      local job = finished()
      cut_part(job)
      write(out .. ".part", VIDEO .. ("x"):rep(100)) -- its validator still on record
      assert(c:download(job, out))
      assert.are.equal(VIDEO, read(out))
      assert.are.equal(416, log("cdn")[2].status)
    end)

    it("starts over when a resumed download's 206 starts before the offset asked, no byte twice", function()
      local job = finished()
      cut_part(job)
      m:fault({ match = "/video/*", kind = "status", status = 206, body = VIDEO:sub(501), content_type = "video/mp4",
                headers = { ["Content-Range"] = string.format("bytes 500-%d/%d", #VIDEO - 1, #VIDEO) } })
      assert(c:download(job, out))
      assert.are.equal(VIDEO, read(out))
      local gets = log("cdn")
      assert.are.equal(206, gets[2].status)
      assert.are.equal(200, gets[3].status)
    end)
  end)
end)
