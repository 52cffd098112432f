-- Self-test of the mock Viggle Render API (spec/mock/), driven with the curl CLI.
-- Run from the repo root: busted --lua=lua5.4 spec/mock_spec.lua
package.path = "./?.lua;" .. package.path
local cjson = require("cjson")
local mock = require("spec.mock.server")

local null = cjson.null

local support = require("spec.support")
local q, read_file = support.q, support.read_file


-- shell(cmd) -> output, exit code
local function shell(cmd)
  local rc, out = support.sh(cmd)
  return out, rc
end

local m -- the mock
local tmp -- scratch dir
local seq = 0

-- curl(args, url) -> {rc=, status=, headers={lowercase=value}, body=, json=, time=}
local function curl(args, url)
  seq = seq + 1
  local hdr, body = tmp .. "/h" .. seq, tmp .. "/b" .. seq
  local out, rc = shell("curl -sS -D " .. q(hdr) .. " -o " .. q(body)
    .. " -w '~%{http_code} %{time_total}' " .. args .. " " .. q(url))
  local r = { rc = rc, out = out, headers = {} }
  local code, t = out:match("~(%d+) ([%d%.]+)%s*$")
  r.status, r.time = tonumber(code), tonumber(t)
  r.body = read_file(body) or ""
  local htext = read_file(hdr) or ""
  -- last header block only (skip "100 Continue")
  local last = htext:match(".*(HTTP/[^\r\n]*\r\n.-)\r\n\r\n") or htext
  for k, v in last:gmatch("([%w%-]+):%s*([^\r\n]*)") do r.headers[k:lower()] = v end
  local ok, j = pcall(cjson.decode, r.body)
  if ok then r.json = j end
  return r
end

local function api(path) return m.base_url .. path end
local function auth(key) return "-H " .. q("Authorization: Bearer " .. (key or "sk-test-valid")) end

local STATUS_FIELDS = {
  "job_id", "status", "mode", "checkpoint", "progress_pct", "cdn_url", "mask_cdn_url",
  "download_url", "error", "error_code", "error_message", "progress", "chunks",
  "created_at", "completed_at",
}

describe("mock Viggle API", function()
  setup(function()
    tmp = (io.popen("mktemp -d"):read("*l"))
    local err
    m, err = mock.start()
    assert(m, err)
  end)

  teardown(function()
    if m then m:stop() end
    if tmp then os.execute("rm -rf " .. q(tmp)) end
  end)

  before_each(function()
    m:reset()
  end)

  it("starts on 127.0.0.1 with two ports and a temp prefix", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", m.base_url)
    assert.equals("http://127.0.0.1:" .. m.cdn_port, m.cdn_base)
    assert.are_not.equal(m.port, m.cdn_port)
    assert.truthy(m.port >= 20000 and m.port <= 60000)
    assert.truthy(read_file(m.prefix .. "/logs/nginx.pid"))
  end)

  describe("GET /api/render/{id}", function()
    it("walks queued -> processing x4 -> complete in poll mode, one stage per GET", function()
      local id = m:job({})
      local want = {
        { "queued", null, 0 },
        { "processing", "ref_done", 20 },
        { "processing", "dri_done", 45 },
        { "processing", "bg_done", 70 },
        { "processing", "render_done", 90 },
        { "complete", "render_done", 100 },
      }
      for i, w in ipairs(want) do
        local r = curl("", api("/api/render/" .. id))
        assert.equals(200, r.status)
        assert.equals("application/json", r.headers["content-type"])
        local j = r.json
        for _, f in ipairs(STATUS_FIELDS) do
          assert.is_not_nil(j[f], "field " .. f .. " missing at stage " .. i)
        end
        assert.equals(id, j.job_id)
        assert.equals(w[1], j.status)
        assert.equals(w[2], j.checkpoint)
        assert.equals(w[3], j.progress_pct)
        assert.equals("kept", j.x_mock)
        assert.matches('"chunks":%[%]', r.body)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", j.created_at)
        if i < 6 then
          assert.equals(null, j.cdn_url)
          assert.matches('"cdn_url":null', r.body)
        end
        if i == 1 then assert.equals(null, j.progress) end
        if i == 2 then
          assert.same({ completed_chunks = 0, total_chunks = 4, percent = 20 }, j.progress)
        end
      end
      local r = curl("", api("/api/render/" .. id))
      local j = r.json
      assert.equals("complete", j.status)
      assert.matches("^" .. m.cdn_base:gsub("%p", "%%%0") .. "/video/" .. id .. "%.mp4%?expires=%d+$", j.cdn_url)
      assert.equals(j.cdn_url, j.download_url)
      assert.equals(null, j.mask_cdn_url)
      assert.matches("Z$", j.completed_at)
      local expires = tonumber(j.cdn_url:match("expires=(%d+)"))
      assert.truthy(expires > os.time() + 3000 and expires < os.time() + 3700)
      assert.equals(null, j.error_code)
    end)

    it("reports a failed job with its error code and message", function()
      local id = m:job({ outcome = "failed" })
      for _ = 1, 5 do curl("", api("/api/render/" .. id)) end
      local j = curl("", api("/api/render/" .. id)).json
      assert.equals("failed", j.status)
      assert.equals("CS-UORC01-009", j.error_code)
      assert.equals("Render failed: pose not detected", j.error_message)
      assert.equals("Render failed: pose not detected", j.error)
      assert.equals(null, j.cdn_url)

      local id2 = m:job({ outcome = "failed", error_code = "CS-X-1", error_message = "boom" })
      for _ = 1, 5 do curl("", api("/api/render/" .. id2)) end
      j = curl("", api("/api/render/" .. id2)).json
      assert.same({ "failed", "CS-X-1", "boom" }, { j.status, j.error_code, j.error_message })
    end)

    it("keeps a stuck job at render_done, walks explicit statuses, gives masks for transparent jobs", function()
      local id = m:job({ outcome = "stuck" })
      local j
      for _ = 1, 9 do j = curl("", api("/api/render/" .. id)).json end
      assert.same({ "processing", "render_done", 90 }, { j.status, j.checkpoint, j.progress_pct })

      local sid = m:job({ statuses = { "queued", "rendering", "mystery", "merging", "complete" } })
      local seen = {}
      for i = 1, 6 do seen[i] = curl("", api("/api/render/" .. sid)).json.status end
      assert.same({ "queued", "rendering", "mystery", "merging", "complete", "complete" }, seen)

      local tid = m:job({ transparent = true, mode = "fast" })
      for _ = 1, 5 do curl("", api("/api/render/" .. tid)) end
      j = curl("", api("/api/render/" .. tid)).json
      assert.equals("fast", j.mode)
      assert.matches("/mask/" .. tid .. "%.mp4%?expires=%d+$", j.mask_cdn_url)
    end)

    it("advances by time when advance=time", function()
      -- a step long enough that two reads in a row fit in it on a loaded machine
      local id = m:job({ advance = "time", step = 0.5 })
      assert.equals("queued", curl("", api("/api/render/" .. id)).json.status)
      assert.equals("queued", curl("", api("/api/render/" .. id)).json.status)
      os.execute("sleep 2.8")
      assert.equals("complete", curl("", api("/api/render/" .. id)).json.status)
    end)

    it("answers 404 {detail} for an unknown id, and ignores a bad key on this endpoint", function()
      local r = curl("", api("/api/render/job_nope"))
      assert.equals(404, r.status)
      assert.same({ detail = "Job not found" }, r.json)
      local id = m:job({})
      r = curl(auth("sk-garbage"), api("/api/render/" .. id))
      assert.equals(200, r.status)
      assert.equals("queued", r.json.status)
    end)

    it("makes many jobs at once", function()
      local ids = m:jobs({ count = 50, outcome = "failed" })
      assert.equals(50, #ids)
      assert.are_not.equal(ids[1], ids[2])
      assert.equals("queued", curl("", api("/api/render/" .. ids[50])).json.status)
      assert.same({ "fixed-1", "fixed-2" }, m:jobs({ id = "fixed", count = 2 }))
      assert.equals("mine", m:job({ id = "mine" }))
    end)
  end)

  describe("auth", function()
    it("401 with a plain-string detail when the key is missing", function()
      local r = curl("", api("/api/credits"))
      assert.equals(401, r.status)
      assert.equals("string", type(r.json.detail))
      assert.matches("CS%-UORC01%-006", r.json.detail)
    end)

    it("401 CS-UORC01-007 for expired and unknown keys, 402 for a broke key on render", function()
      local r = curl(auth("sk-test-expired"), api("/api/credits"))
      assert.equals(401, r.status)
      assert.equals("CS-UORC01-007", r.json.detail.error_code)
      assert.is_string(r.json.detail.message)
      assert.is_string(r.json.detail.action)
      r = curl(auth("sk-who"), api("/api/credits"))
      assert.equals(401, r.status)
      assert.equals("CS-UORC01-007", r.json.detail.error_code)
      r = curl(auth("sk-test-broke") .. " -F ref_image_url=http://x/a.png -F scene_id=scene_1", api("/api/render"))
      assert.equals(402, r.status)
      assert.equals("CS-UORC01-008", r.json.detail.error_code)
      r = curl(auth(), api("/api/credits"))
      assert.equals(200, r.status)
      assert.equals(100, r.json.balance)
      m:config({ keys = { "sk-other" } })
      assert.equals(401, curl(auth(), api("/api/credits")).status)
      assert.equals(200, curl(auth("sk-other"), api("/api/credits")).status)
    end)
  end)

  describe("POST /api/render", function()
    it("accepts a real upload, records what arrived, and makes a job", function()
      local img = tmp .. "/ref.png"
      os.execute("head -c 1500000 /dev/urandom > " .. q(img))
      local md5 = shell("md5sum " .. q(img)):match("^(%x+)")
      m:config({ render_job = { advance = "poll" } })
      local r = curl(auth() .. " -F " .. q("ref_image=@" .. img .. ";type=image/png")
        .. " -F driving_video_url=http://example.invalid/d.mp4 -F background_mode=transparent"
        .. " -F model=V3_Preview", api("/api/render"))
      assert.equals(200, r.status)
      assert.matches("^job_%w+$", r.json.job_id)
      assert.equals("queued", r.json.status)
      assert.equals("full_pipeline", r.json.mode)
      assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+Z$", r.json.enqueued_at)
      local entry = m:log()[1]
      assert.equals("POST", entry.method)
      assert.equals("/api/render", entry.uri)
      assert.same({ filename = "ref.png", content_type = "image/png", size = 1500000, md5 = md5 }, entry.form.ref_image)
      assert.equals("http://example.invalid/d.mp4", entry.form.driving_video_url.value)
      assert.equals("V3_Preview", entry.form.model.value)
      local id = r.json.job_id
      local j
      for _ = 1, 6 do j = curl("", api("/api/render/" .. id)).json end
      assert.equals("complete", j.status)
      assert.matches("/mask/" .. id .. "%.mp4", j.mask_cdn_url)

      r = curl(auth() .. " -F character_id=char_1 -F scene_id=scene_1 -F fast=true", api("/api/render"))
      assert.equals("fast", r.json.mode)
      r = curl(auth() .. " -F character_id=char_1 -F scene_id=scene_1", api("/api/render"))
      assert.equals("preprocessed", r.json.mode)
    end)

    it("answers the documented 400 errors", function()
      local cases = {
        { "-F driving_video_url=http://x/d.mp4", "CS-ORIV-001" },
        { "-F ref_image_url=http://x/a.png", "CS-ORIV-002" },
        { "-F ref_image_url=http://x/a.png -F scene_id=s -F model=V9", "CS-UORC01-002" },
        { "-F ref_image_url=http://x/a.png -F scene_id=s -F background_mode=neon", "CS-ORIV-011" },
        { "-F scene_id=s -F " .. q("character_mapping=[1,2]"), "CS-ORIV-012" },
        { "-F scene_id=s -F " .. q("character_mapping={not json"), "CS-ORIV-012" },
        { "-F character_id=char_missing -F scene_id=s", "CS-ORIV-008" },
        { "-F character_id=c -F scene_id=scene_missing", "CS-ORIV-009" },
        { "-F character_id=c -F scene_id=scene_pending", "CS-ORIV-010" },
      }
      for _, c in ipairs(cases) do
        local r = curl(auth() .. " " .. c[1], api("/api/render"))
        assert.equals(400, r.status, c[1])
        assert.equals(c[2], r.json.detail.error_code, c[1])
        assert.is_string(r.json.detail.message)
        assert.is_string(r.json.detail.action)
      end
      local r = curl(auth() .. " -F scene_id=s -F " .. q('character_mapping={"seg-1":"char_1"}'), api("/api/render"))
      assert.equals(200, r.status)
    end)
  end)

  describe("DELETE /api/render/{id}", function()
    it("cancels, then the status says cancelled; 404 for unknown; 204 when configured", function()
      local id = m:job({})
      curl("", api("/api/render/" .. id))
      local r = curl("-X DELETE " .. auth(), api("/api/render/" .. id))
      assert.equals(200, r.status)
      assert.same({ success = true, job_id = id, status = "cancelled" }, r.json)
      for _ = 1, 7 do assert.equals("cancelled", curl("", api("/api/render/" .. id)).json.status) end
      assert.equals(401, curl("-X DELETE", api("/api/render/" .. id)).status)
      assert.equals(404, curl("-X DELETE " .. auth(), api("/api/render/nope")).status)
      m:config({ cancel_empty = true })
      local id2 = m:job({})
      r = curl("-X DELETE " .. auth(), api("/api/render/" .. id2))
      assert.equals(204, r.status)
      assert.equals("", r.body)
    end)
  end)

  describe("faults", function()
    it("429 with Retry-After seconds, 503 with an HTTP date, consumed in order", function()
      local id = m:job({})
      m:fault({ match = "/api/render/*", kind = "status", status = 429, retry_after = "2" })
      m:fault({ match = "/api/render/" .. id, method = "GET", kind = "status", status = 503, retry_after_date = 30 })
      local r = curl("", api("/api/render/" .. id))
      assert.equals(429, r.status)
      assert.equals("2", r.headers["retry-after"])
      r = curl("", api("/api/render/" .. id))
      assert.equals(503, r.status)
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers["retry-after"])
      r = curl("", api("/api/render/" .. id))
      assert.equals(200, r.status)
      assert.equals("queued", r.json.status) -- the failed GETs did not advance the job
      m:fault({ match = "/api/credits", kind = "status", status = 500, times = 2, body = "oops", content_type = "text/plain" })
      assert.equals(500, curl(auth(), api("/api/credits")).status)
      assert.equals("oops", curl(auth(), api("/api/credits")).body)
      assert.equals(200, curl(auth(), api("/api/credits")).status)
      assert.same({}, m:faults())
    end)

    it("drop, truncated, malformed, html, huge, slow", function()
      local id = m:job({})
      m:fault({ match = "/api/render/*", kind = "drop" })
      local r = curl("", api("/api/render/" .. id))
      assert.equals(52, r.rc) -- empty reply
      m:fault({ match = "/api/render/*", kind = "truncated" })
      r = curl("", api("/api/render/" .. id))
      assert.equals(18, r.rc) -- partial file
      assert.truthy(tonumber(r.headers["content-length"]) > #r.body)
      m:fault({ match = "/api/render/*", kind = "malformed" })
      r = curl("", api("/api/render/" .. id))
      assert.equals(200, r.status)
      assert.equals('{"job_id": "x", "status": ', r.body)
      m:fault({ match = "/api/render/*", kind = "html" })
      r = curl("", api("/api/render/" .. id))
      assert.equals(502, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      m:fault({ match = "/api/render/*", kind = "huge", size = 3 * 1024 * 1024 })
      r = curl("", api("/api/render/" .. id))
      assert.equals(3 * 1024 * 1024, #r.body)
      assert.equals(id, r.json.job_id)
      assert.equals("kept", r.json.x_mock)
      m:fault({ match = "/api/render/*", kind = "slow", delay = 0.4 })
      r = curl("", api("/api/render/" .. id))
      assert.equals(200, r.status)
      assert.truthy(r.time >= 0.35, "slow answer took " .. r.time)
      -- the log marks the faults
      local kinds = {}
      for _, e in ipairs(m:log()) do kinds[#kinds + 1] = e.fault or "-" end
      assert.same({ "drop", "truncated", "malformed", "html", "huge", "slow" }, kinds)
    end)

    it("config.delay slows every /api answer", function()
      m:config({ delay = 0.3 })
      local r = curl(auth(), api("/api/credits"))
      assert.truthy(r.time >= 0.25, "took " .. r.time)
      m:config({ delay = cjson.null })
      r = curl(auth(), api("/api/credits"))
      assert.truthy(r.time < 0.25, "took " .. r.time)
    end)
  end)

  describe("the request log", function()
    it("records method, uri, args, lowercased headers, status and connection ids", function()
      local id = m:job({})
      -- two URLs in one curl run share one keep-alive connection
      curl(auth() .. " -H 'X-Trace: abc' " .. q(api("/api/render/" .. id .. "?a=1")), api("/api/render/" .. id))
      curl("", api("/api/render/" .. id))
      local log = m:log()
      assert.equals(3, #log)
      local a, b, c = log[1], log[2], log[3]
      assert.same({ 1, 2, 3 }, { a.seq, b.seq, c.seq })
      assert.equals("GET", a.method)
      assert.equals("/api/render/" .. id, a.uri)
      assert.equals("a=1", a.args)
      assert.equals(null, b.args)
      assert.equals("Bearer sk-test-valid", a.headers.authorization)
      assert.equals("abc", a.headers["x-trace"])
      assert.equals("api", a.server)
      assert.equals(200, a.status)
      assert.equals(a.connection, b.connection)
      assert.same({ 1, 2 }, { a.connection_requests, b.connection_requests })
      assert.are_not.equal(a.connection, c.connection)
      assert.truthy(a.t > 1.6e9 and b.t >= a.t)
      assert.equals(2, m:connections())
      assert.equals(1, #m:log(2))
    end)

    it("keeps 10,000+ entries", function()
      local _, rc = shell("curl -s -o /dev/null " .. q(api("/api/render/x[1-10050]")))
      assert.equals(0, rc)
      local log = m:log()
      assert.equals(10050, #log)
      assert.equals("/api/render/x10050", log[10050].uri)
      assert.equals(404, log[10050].status)
      -- keepalive_requests 10000: the 10001st request comes on a new connection
      assert.equals(2, m:connections())
      assert.equals(10000, log[10000].connection_requests)
      assert.equals(1, log[10001].connection_requests)
    end)
  end)

  describe("the CDN", function()
    local demo = mock.dir .. "/files/demo.mp4"

    it("serves the finished video with Range support, on its own origin", function()
      local id = m:job({})
      local j
      for _ = 1, 6 do j = curl(auth(), api("/api/render/" .. id)).json end
      local r = curl("", j.cdn_url)
      assert.equals(200, r.status)
      assert.equals("video/mp4", r.headers["content-type"])
      assert.equals("bytes", r.headers["accept-ranges"])
      assert.equals(read_file(demo), r.body)
      r = curl("-r 100-199", j.cdn_url)
      assert.equals(206, r.status)
      assert.equals(read_file(demo):sub(101, 200), r.body)
      assert.matches("^bytes 100%-199/%d+$", r.headers["content-range"])
      local last = m:log()
      last = last[#last]
      assert.equals("cdn", last.server)
      assert.equals("/video/" .. id .. ".mp4", last.uri)
      assert.is_nil(last.headers.authorization)
      assert.equals(206, last.status)
    end)

    it("refuses an expired link with 403, and faults apply to CDN paths", function()
      local r = curl("", m.cdn_base .. "/video/job_a.mp4?expires=" .. (os.time() - 5))
      assert.equals(403, r.status)
      m:config({ cdn_ttl = -10 })
      local id = m:job({})
      local j
      for _ = 1, 6 do j = curl("", api("/api/render/" .. id)).json end
      assert.equals(403, curl("", j.cdn_url).status)
      m:fault({ match = "/video/*", kind = "truncated" })
      r = curl("", m.cdn_base .. "/video/job_a.mp4")
      assert.equals(18, r.rc)
      m:fault({ match = "/video/job_a.mp4", kind = "status", status = 503 })
      assert.equals(503, curl("", m.cdn_base .. "/video/job_a.mp4").status)
      assert.equals(200, curl("", m.cdn_base .. "/video/job_a.mp4").status)
      assert.equals(404, curl("", m.cdn_base .. "/other").status)
      m:fault({ match = "/mask/*", kind = "stall", sent = 1000, delay = 0.3 })
      r = curl("", m.cdn_base .. "/mask/job_a.mp4")
      assert.equals(200, r.status)
      assert.truthy(r.time >= 0.25, "took " .. r.time)
      assert.equals(read_file(mock.dir .. "/files/mask.mp4"), r.body)
    end)

    it("makes /video/big.mp4 on request, with a known byte pattern", function()
      local path = m:big(300000)
      assert.equals(m.prefix .. "/cdn/video/big.mp4", path)
      local r = curl("-r 65519-65524", m.cdn_base .. "/video/big.mp4")
      assert.equals(206, r.status)
      local want = {}
      for k = 65519, 65524 do
        local i = k % 65521
        want[#want + 1] = string.char((i * i * 31 + i * 7 + 13) % 256)
      end
      assert.equals(table.concat(want), r.body)
      r = curl("", m.cdn_base .. "/video/big.mp4")
      assert.equals("300000", r.headers["content-length"])
    end)
  end)

  it("runs as a script: start writes a state file, stop removes nginx and PREFIX", function()
    local state = tmp .. "/state/mock.env"
    local out, rc = shell("lua5.4 spec/mock/server.lua start --state " .. q(state))
    assert.equals(0, rc, out)
    local text = read_file(state)
    local base = text:match("VIGGLE_BASE_URL=(%S+)")
    local prefix = text:match("VIGGLE_MOCK_PREFIX=(%S+)")
    local pid = text:match("VIGGLE_MOCK_PID=(%d+)")
    assert.matches("^http://127%.0%.0%.1:%d+$", base)
    assert.equals(200, curl("", base .. "/_mock/ping").status)
    local other = assert(mock.attach(state))
    assert.equals("mine", other:job({ id = "mine" }))
    other:stop() -- only forgets it
    assert.equals(200, curl("", base .. "/api/render/mine").status)
    out, rc = shell("lua5.4 spec/mock/server.lua stop --state " .. q(state))
    assert.equals(0, rc, out)
    assert.is_nil(read_file(state))
    assert.is_nil(io.open(prefix .. "/nginx.conf"))
    local stat = read_file("/proc/" .. pid .. "/stat")
    assert.truthy(stat == nil or stat:match("%) (%a)") == "Z")
  end)

  it("reset clears jobs, faults, log and config", function()
    local id = m:job({})
    m:fault({ match = "/api/*", kind = "drop", times = -1 })
    m:config({ delay = 1 })
    m:reset()
    local r = curl("", api("/api/render/" .. id))
    assert.equals(404, r.status)
    assert.truthy(r.time < 0.5)
    assert.equals(1, #m:log())
  end)
end)
