-- Pre-flight, cost estimates and durable batches, against the mock: what a
-- user would notice is money (what the server was asked to render, how many
-- times) and videos (bytes on disk).
local viggle = require("viggle")
local core = require("viggle.core")
local cjson = require("cjson")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local format, floor, char = string.format, math.floor, string.char
local KEY = "sk-test-valid"
local DEMO = "spec/mock/files/demo.mp4"

-- ---- MP4 files of known duration, written box by box ----------------------------

local function be32(n) return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256) end
local function be64(n) return be32(floor(n / 4294967296)) .. be32(n % 4294967296) end
local function box(kind, body) return be32(8 + #body) .. kind .. body end

-- An MP4 whose moov/mvhd says timescale and duration; `version` 0 or 1; an
-- mdat (64-bit size header with large = true) before the moov, as cameras
-- write them; a moov with a 64-bit size header with large_moov = true; `pad`
-- makes each file's bytes (and md5) its own.
local function mp4(path, o)
  local tail = be32(0x00010000) .. "\1\0" .. ("\0"):rep(10) .. ("\0"):rep(36) .. ("\0"):rep(24) .. be32(2)
  local mvhd
  if o.version == 1 then
    mvhd = "\1\0\0\0" .. be64(0) .. be64(0) .. be32(o.timescale) .. be64(o.duration) .. tail
  else
    mvhd = "\0\0\0\0" .. be32(0) .. be32(0) .. be32(o.timescale) .. be32(o.duration) .. tail
  end
  local data = o.pad or "frames"
  local mdat = o.large and (be32(1) .. "mdat" .. be64(16 + #data) .. data) or box("mdat", data)
  local f = assert(io.open(path, "wb"))
  local moov_body = box("mvhd", mvhd) .. box("trak", "")
  local moov = o.large_moov and (be32(1) .. "moov" .. be64(16 + #moov_body) .. moov_body) or box("moov", moov_body)
  f:write(box("ftyp", "isom" .. be32(512) .. "isomiso2mp41"), mdat, moov)
  f:close()
  return path
end

describe("batches", function()
  local m, dir, c

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/batch"
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ render_job = { advance = "time", step = 0.05 } })
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 5 }))
  end)

  local function posts()
    local n = 0
    for _, r in ipairs(m:log()) do if r.method == "POST" then n = n + 1 end end
    return n
  end

  -- a fresh directory for one test
  local serial = 0
  local function fresh()
    serial = serial + 1
    local d = format("%s/t%d", dir, serial)
    os.execute("mkdir -p " .. d .. "/out")
    return d
  end

  local write = support.write_file

  -- a manifest of `n` items, each with its own video (file i lasts 1 + i/10 s)
  local function manifest(d, n, extra)
    local lines = {}
    for i = 1, n do
      mp4(format("%s/v%d.mp4", d, i), { timescale = 1000, duration = 1000 + i * 100, pad = "video " .. i })
      local item = { key = "item" .. i, character_id = "char_" .. i, driving_video = format("v%d.mp4", i),
                     output = format("out/item%d.mp4", i) }
      for k, v in pairs(extra and extra(i) or {}) do item[k] = v end
      lines[#lines + 1] = cjson.encode(item)
    end
    return write(d .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n")
  end

  -- bin/viggle with args; returns rc, stdout, stderr
  local function cli(args, env)
    local out = dir .. "/cli.out"
    local err = dir .. "/cli.err"
    local cmd = format("cd %s && VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s %s %s bin/viggle %s >%s 2>%s </dev/null; echo $?",
      support.q(os.getenv("PWD")), m.base_url, KEY, env or "", support.interp, args, out, err)
    local rc = tonumber(support.capture(cmd))
    return rc, support.read_file(out), support.read_file(err)
  end

  local function json_lines(text)
    local list = {}
    for line in (text or ""):gmatch("[^\n]+") do
      local ok, v = pcall(cjson.decode, line)
      if ok and type(v) == "table" then list[#list + 1] = v end
    end
    return list
  end

  describe("client:estimate", function()
    it("reads the duration of a real MP4 from its mvhd: 1 credit a second, 2 in fast mode", function()
      local e = assert(c:estimate({ character_id = "c", driving_video = DEMO }))
      assert.are.same({ credits = 2, seconds = 1.5, exact = true, fast = false, source = "driving_video" }, e)
      assert.are.equal(4, assert(c:estimate({ character_id = "c", driving_video = DEMO, fast = true })).credits)
    end)

    it("walks the box tree: mdat before moov, 64-bit sizes, mvhd versions 0 and 1", function()
      local d = fresh()
      local v0 = mp4(d .. "/v0.mp4", { timescale = 600, duration = 7404, pad = ("x"):rep(5000) })
      local v1 = mp4(d .. "/v1.mp4", { version = 1, timescale = 90000, duration = 270000, large = true })
      local e0 = assert(c:estimate({ driving_video = v0 }))
      assert.are.equal(12.34, e0.seconds)
      assert.are.equal(13, e0.credits) -- whole seconds, rounded up
      local e1 = assert(c:estimate({ driving_video = v1, fast = true }))
      assert.are.equal(3, e1.seconds)
      assert.are.equal(6, e1.credits)
      local v2 = mp4(d .. "/v2.mp4", { timescale = 1000, duration = 2500, large_moov = true })
      assert.are.equal(2.5, assert(c:estimate({ driving_video = v2 })).seconds) -- the moov's own 64-bit size
      local _, err = c:estimate({ driving_video = "spec/mock/files/character.png" })
      assert.are.equal("invalid_argument", err.kind)
      assert.matches("cannot read the MP4 duration: no moov box", err.message)
      assert.are.equal(0, #m:log()) -- a local file costs no request
    end)

    it("asks the API for a scene's duration, and says a remote video's cost is unknown", function()
      local sid = m:scene({ duration = 7.2, advance = "time", step = 0.001 }) -- ready at once
      local e = assert(c:estimate({ character_id = "c", scene_id = sid }))
      assert.are.equal(8, e.credits)
      assert.is_true(e.exact)
      assert.are.equal("/api/scenes/" .. sid, m:log()[1].uri)
      local pending = assert(c:estimate({ character_id = "c", scene_id = m:scene({ outcome = "stuck" }) }))
      assert.is_false(pending.exact)
      assert.is_nil(pending.credits)
      local remote = assert(c:estimate({ character_id = "c", driving_video_url = "https://example.invalid/a.mp4" }))
      assert.is_false(remote.exact)
      assert.is_nil(remote.credits)
      assert.matches("remote URL", remote.reason)
      local _, err = c:estimate({ character_id = "c", scene_id = "scene_missing" })
      assert.are.equal("not_found", err.kind)
    end)
  end)

  describe("client:render's err.uncertain", function()
    it("is true when the POST may have created a job, absent when it surely did not", function()
      local params = { character_id = "c", driving_video = DEMO }
      m:fault({ match = "/api/render", method = "POST", kind = "drop" })
      local _, err = c:render(params)
      assert.are.equal("network", err.kind)
      assert.is_true(err.uncertain)
      m:fault({ match = "/api/render", method = "POST", kind = "status", status = 500 })
      _, err = c:render(params)
      assert.is_true(err.uncertain)
      _, err = c:render({ character_id = "char_missing", driving_video = DEMO })
      assert.are.equal("api", err.kind)
      assert.is_nil(err.uncertain)
      local closed = assert(viggle.new({ base_url = "http://127.0.0.1:9", api_key = KEY, retries = 0 }))
      _, err = closed:render(params)
      assert.are.equal("COULDNT_CONNECT", err.code)
      assert.is_nil(err.uncertain)
    end)
  end)

  it("viggle batch --help says what the journal states and uncertain mean", function()
    local rc, out = cli("batch --help")
    assert.are.equal(0, rc)
    assert.matches("Usage: viggle batch MANIFEST", out)
    for _, s in ipairs({ "planned", "submitting", "submitted", "complete", "downloaded", "uncertain",
                         "%-%-resubmit%-uncertain", "%-%-max%-credits", "%-%-allow%-unknown%-cost" }) do
      assert.matches(s, out)
    end
    local _, usage = cli("--help")
    assert.matches("batch MANIFEST", usage)
  end)

  describe("pre-flight", function()
    local function refused(params, opts, kind, pattern)
      local job, err = c:run(params, opts)
      assert.is_nil(job)
      assert.are.equal(kind, err.kind)
      assert.matches(pattern, err.message)
      assert.are.equal(0, posts()) -- nothing sent, nothing paid
    end

    it("refuses before the POST what would fail only after paying", function()
      local d = fresh()
      -- run follows a named character until ready before it renders: a real one
      local ok = { character_id = m:character({ advance = "time", step = 0.001 }), driving_video = DEMO }
      write(d .. "/exists.mp4", "mine")
      refused(ok, { output = d .. "/exists.mp4" }, "invalid_argument", "exists %(pass overwrite = true")
      refused(ok, { output = d .. "/no/such/dir/o.mp4" }, "invalid_argument", "does not exist")
      refused(ok, { output = "/proc/viggle-out.mp4" }, "io", "cannot write in /proc")
      write(d .. "/empty.mp4", "")
      refused({ character_id = "c", driving_video = d .. "/empty.mp4" }, { output = d .. "/o.mp4" },
        "invalid_argument", "driving_video: cannot read .* %(the file is empty%)")
      refused({ character_id = "c", driving_video = d }, { output = d .. "/o.mp4" },
        "invalid_argument", "driving_video: cannot read")
      refused({ character_id = "c", driving_video = d .. "/missing.mp4" }, { output = d .. "/o.mp4" },
        "invalid_argument", "driving_video: cannot read")
      local nokey = assert(viggle.new({ base_url = m.base_url, api_key = "" }))
      local _, err = nokey:run(ok, { output = d .. "/o.mp4" })
      assert.are.equal("auth", err.kind)
      assert.are.equal(0, posts())
      assert.are.equal("mine", support.read_file(d .. "/exists.mp4"))
      -- with overwrite the same call goes through
      local job, path = c:run(ok, { output = d .. "/exists.mp4", overwrite = true, interval = 0.02 })
      assert.are.equal("complete", job.status)
      assert.are.equal(support.read_file(DEMO), support.read_file(path))
    end)

    it("viggle render --wait -o refuses an existing output before sending anything", function()
      local d = fresh()
      write(d .. "/taken.mp4", "mine")
      local rc, _, err = cli(format("render --character c --video %s --wait -o %s", DEMO, d .. "/taken.mp4"))
      assert.are.equal(1, rc)
      assert.matches("exists", err)
      assert.are.equal(0, posts())
    end)

    it("a batch refuses the whole run, naming the item, before any POST", function()
      local d = fresh()
      local path = manifest(d, 3)
      write(d .. "/out/item2.mp4", "mine")
      local rc, _, err = cli("batch " .. path)
      assert.are.equal(1, rc)
      assert.matches('item "item2": output .*item2.mp4 exists', err)
      assert.are.equal(0, posts())
    end)
  end)

  describe("the journal", function()
    it("refuses a manifest that changed under it, naming the key", function()
      local d = fresh()
      local path = manifest(d, 2)
      assert.are.equal(0, (cli("batch " .. path .. " --interval 0.02")))
      local text = support.read_file(path):gsub('"char_2"', '"char_other"')
      write(path, text)
      local before = posts()
      local rc, _, err = cli("batch " .. path)
      assert.are.equal(1, rc)
      assert.matches('the manifest changed under its journal .*: item "item2" differs %(character_id%)', err)
      assert.are.equal(before, posts())
    end)

    it("lets one batch at a time run on a journal, and a killed one leaves no lock behind", function()
      local d = fresh()
      local path = manifest(d, 4)
      m:config({ delay = 0.3 })
      local pid = tonumber(support.capture(format("cd %s && (VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s exec %s bin/viggle "
        .. "batch %s --interval 0.05 >/dev/null 2>&1 </dev/null) & echo $!", support.q(os.getenv("PWD")),
        m.base_url, KEY, support.interp, path)))
      local t0 = core.now()
      while not support.exists(path .. ".journal-lock") and core.now() - t0 < 5 do core.sleep(0.01) end
      core.sleep(0.2)
      local rc, _, err = cli("batch " .. path)
      assert.are.equal(1, rc)
      assert.matches("another batch is running on the journal", err)
      os.execute("kill -9 " .. pid)
      core.sleep(0.1)
      m:config({ delay = 0 })
      rc, _, err = cli("batch " .. path .. " --interval 0.02 --resubmit-uncertain")
      assert.are.equal(0, rc, err)
    end)

    it("batch status shows counts, job ids, states and outputs without calling the API", function()
      local d = fresh()
      local path = manifest(d, 2, function(i) if i == 2 then return { character_id = "char_missing" } end end)
      local rc, _, err = cli("batch " .. path .. " --interval 0.02")
      assert.are.equal(3, rc)
      assert.matches("1 downloaded, 1 failed", err)
      local seen = #m:log()
      local out
      rc, out = cli("batch status " .. path)
      assert.are.equal(0, rc)
      assert.matches("2 items", out)
      assert.matches("downloaded 1,", out)
      assert.matches("failed 1,", out)
      assert.matches("item1%s+downloaded%s+job_%w+%s+out/item1.mp4", out)
      assert.matches("item2%s+failed%s+%-%s+out/item2.mp4%s+%(Character not found", out)
      rc, out = cli("batch status " .. path .. " --json")
      assert.are.equal(0, rc)
      local st = cjson.decode(out)
      assert.are.equal(1, st.counts.downloaded)
      assert.are.equal("CS-ORIV-008", st.items[2].code)
      assert.are.equal(seen, #m:log())
      rc, _, err = cli("batch status " .. d .. "/nothing.jsonl")
      assert.are.equal(1, rc)
      assert.matches("no journal at", err)
    end)

    it("a POST answered by a dropped connection is uncertain: reported, not sent again unless asked", function()
      local d = fresh()
      local path = manifest(d, 2)
      m:fault({ match = "/api/render", method = "POST", kind = "drop" })
      local rc, out, err = cli("batch " .. path .. " --json --interval 0.02 --concurrency 1")
      assert.are.equal(1, rc)
      local lines = json_lines(out)
      assert.are.equal("uncertain", lines[1].state)
      assert.are.equal("downloaded", lines[2].state)
      assert.matches("uncertain %(.-%): item1", err)
      assert.are.equal(2, posts())
      rc = cli("batch " .. path .. " --interval 0.02")
      assert.are.equal(1, rc)
      assert.are.equal(2, posts()) -- not sent again
      rc, out = cli("batch " .. path .. " --json --interval 0.02 --resubmit-uncertain")
      assert.are.equal(0, rc)
      assert.are.equal(3, posts())
      lines = json_lines(out)
      assert.is_true(lines[1].was_uncertain)
      assert.are.equal("downloaded", lines[1].state)
    end)
  end)

  describe("money", function()
    it("--max-credits submits only while the estimates stay within it", function()
      local d = fresh()
      -- item i lasts 1.i s: 2 credits each; the fourth is a remote video of unknown cost
      local path = manifest(d, 4, function(i)
        if i == 4 then return { driving_video = cjson.null, driving_video_url = "https://example.invalid/v.mp4" } end
      end)
      local rc, out, err = cli("batch " .. path .. " --max-credits 5 --json --interval 0.02 --concurrency 1")
      assert.are.equal(1, rc)
      assert.matches("estimate: 6 credits for 4 items to submit %(%+ 1 of unknown cost: remote videos%); "
        .. "balance 100 credits; limit 5", err)
      local lines = json_lines(out)
      assert.are.equal("downloaded", lines[1].state)
      assert.are.equal("downloaded", lines[2].state)
      assert.are.equal("planned", lines[3].state)
      assert.matches("over max_credits 5", lines[3].message)
      assert.are.equal("planned", lines[4].state)
      assert.matches("cost is unknown", lines[4].message)
      assert.are.equal(2, m:posts().made)
      -- a later run under a larger limit sends the rest, and the unknown one when allowed
      rc = cli("batch " .. path .. " --max-credits 6 --allow-unknown-cost --interval 0.02")
      assert.are.equal(0, rc)
      assert.are.equal(4, m:posts().made)
    end)

    it("a 402 stops further submissions and lets the submitted ones finish", function()
      local d = fresh()
      local path = manifest(d, 5)
      m:config({ renders_left = 2, balance = 3 })
      local rc, out, err = cli("batch " .. path .. " --json --interval 0.02 --concurrency 1")
      assert.are.equal(1, rc)
      assert.matches("balance 3 credits", err)
      assert.matches("MORE THAN THE BALANCE", err)
      assert.matches("402 %(not enough credits%): no more submissions", err)
      local lines = json_lines(out)
      assert.are.equal("downloaded", lines[1].state)
      assert.are.equal("downloaded", lines[2].state)
      for i = 3, 5 do assert.are.equal("planned", lines[i].state) end
      assert.are.equal("CS-UORC01-008", lines[3].code)
      assert.matches("not submitted: the API answered 402", lines[4].message)
      assert.are.equal(3, posts()) -- the third was refused; the fourth and fifth never sent
      assert.are.equal(2, m:posts().made)
    end)
  end)

  describe("killed with SIGKILL at random moments", function()
    it("resumes to every video on disk, nothing paid twice unless reported uncertain", function()
      local d = fresh()
      local n = 30
      local path = manifest(d, n)
      local md5 = {}
      for i = 1, n do md5["item" .. i] = support.md5(format("%s/v%d.mp4", d, i)) end
      -- every answer takes a while: kills land during uploads and between POST and answer,
      -- during the waits (jobs take 0.6 s) and during downloads
      m:config({ delay = 0.1, cdn_delay = 0.3, render_job = { advance = "time", step = 0.2 } })
      local reported = {}
      local function note(text)
        for _, v in ipairs(json_lines(text)) do
          if v.state == "uncertain" or v.was_uncertain then reported[v.key] = true end
        end
      end
      local seed = os.time()
      math.randomseed(seed)
      local jpath = path .. ".journal"
      -- the items per state, from the journal (read while the batch writes), and the .part files
      -- (a `submitting` counts only if this run sent it: one left by the last kill is stale)
      local posts_before = {}
      local function journal_counts()
        local by = { planned = 0, submitting = 0, submitted = 0, complete = 0, downloaded = 0, uncertain = 0 }
        local posts_now = {}
        if not support.exists(jpath) then by.planned = n return by, 0, posts_now end
        local j = assert(require("viggle.journal").open(jpath, { must_exist = true }))
        for _, r in ipairs(j:items() or {}) do
          posts_now[r.key] = r.posts
          local st = r.state
          if st == "submitting" and r.posts <= (posts_before[r.key] or 0) then st = "stale" end
          by[st] = (by[st] or 0) + 1
        end
        j:close()
        local parts = 0
        for i = 1, n do
          if support.exists(format("%s/out/item%d.mp4.part", d, i)) then parts = parts + 1 end
        end
        return by, parts, posts_now
      end
      local function phase()
        local by, parts = journal_counts()
        if by.submitting > 0 then return "post" end
        if parts > 0 or by.complete > 0 then return "download" end
        if by.submitted > 0 then return "wait" end
        return "other"
      end
      local kills, phases = 0, { post = 0, wait = 0, download = 0, other = 0 }
      local targets = { "post", "post", "post", "post", "wait", "download", "post", "wait", "download",
                        "post", "wait", "download" }
      local round = 0
      while kills < 12 do
        round = round + 1
        -- the phase this round aims at, among those the batch has still to go through
        local by, _, posts_now = journal_counts()
        posts_before = posts_now
        local left = { post = by.planned > 0, wait = by.planned + by.submitted > 0,
                       download = by.planned + by.submitted + by.complete > 0 }
        local target = targets[round] or "download"
        if not left[target] then target = (left.wait and "wait") or (left.download and "download") or nil end
        if not target then break end
        local out = format("%s/run%d.out", d, round)
        local pid = tonumber(support.capture(format(
          "cd %s && (VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s exec %s bin/viggle batch %s --json --interval 0.05 "
          .. "--concurrency 2 >%s 2>&1 </dev/null) & echo $!", support.q(os.getenv("PWD")), m.base_url, KEY,
          support.interp, path, out)))
        -- wait for that phase (at most 3 s), then kill at a random moment within it
        local t0 = core.now()
        while phase() ~= target and core.now() - t0 < 3 do core.sleep(0.01) end
        core.sleep(math.random() * 0.1)
        os.execute("kill -9 " .. pid .. " 2>/dev/null")
        kills = kills + 1
        for _ = 1, 100 do
          local stat = support.read_file("/proc/" .. pid .. "/stat")
          if not stat or stat:match("%) (%a)") == "Z" then break end
          core.sleep(0.01)
        end
        note(support.read_file(out))
        local at = phase()
        phases[at] = phases[at] + 1
      end
      assert.is_true(kills >= 6, "only " .. kills .. " kills before the batch was done")
      assert.is_true(phases.post > 0, "no kill landed while a POST was in flight (seed " .. seed .. ")")
      -- the final resume
      local rc, out, err = cli("batch " .. path .. " --json --interval 0.05 --resubmit-uncertain")
      assert.are.equal(0, rc, err)
      note(out)
      local final = json_lines(out)
      assert.are.equal(n, #final)
      local demo = support.read_file(DEMO)
      local made = m:posts().counts
      local twice = 0
      for i = 1, n do
        local key = "item" .. i
        assert.are.equal("downloaded", final[i].state)
        assert.are.equal(demo, support.read_file(format("%s/out/item%d.mp4", d, i)), key .. " differs")
        assert.is_false(support.exists(format("%s/out/item%d.mp4.part", d, i)))
        local count = made[md5[key]] or 0
        assert.is_true(count >= 1, key .. " was never rendered")
        if count > 1 then
          twice = twice + 1
          assert.is_true(reported[key] == true, key .. " was rendered " .. count .. " times but never reported uncertain")
        end
        -- every item uncertain at some point says so in the final report
        if final[i].was_uncertain then assert.is_true(reported[key]) end
      end
      for key in pairs(reported) do
        assert.is_true(final[tonumber(key:match("%d+"))].was_uncertain, key .. " reported uncertain, then forgotten")
      end
      local figures = os.getenv("VIGGLE_BATCH_FIGURES")
      if figures then
        local uncertain = 0
        for _ in pairs(reported) do uncertain = uncertain + 1 end
        write(figures, format("items %d, kills %d (POST in flight %d, waiting %d, downloading %d, other %d), "
          .. "renders made %d, items rendered twice %d, items reported uncertain %d, seed %d\n", n, kills,
          phases.post, phases.wait, phases.download, phases.other, m:posts().made, twice,
          uncertain, seed))
      end
    end)
  end)
end)
