-- Batches shared by a fleet of workers through a real redis-server: what a
-- user would notice is money (one POST per item), videos (bytes on disk), and
-- that no two workers ever worked one item at once.
local core = require("viggle.core")
local cjson = require("cjson")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local format, q = string.format, support.q
local KEY = "sk-test-valid"
local DEMO = "spec/mock/files/demo.mp4"

describe("fleets on redis", function()
  local m, dir, serial = nil, nil, 0

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/fleet"
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ render_job = { advance = "time", step = 0.05 } })
  end)

  -- a fresh directory with a manifest of `n` items, each with its own video
  -- (so the mock counts the renders of each item apart); returns dir, path, md5s
  local function fresh(n)
    serial = serial + 1
    local d = format("%s/t%d", dir, serial)
    os.execute("mkdir -p " .. d .. "/out")
    local demo = support.read_file(DEMO)
    local lines, md5 = {}, {}
    for i = 1, n do
      local v = support.write_file(format("%s/v%d.mp4", d, i), demo .. "item " .. i)
      md5["item" .. i] = support.md5(v)
      lines[i] = cjson.encode({ key = "item" .. i, character_id = "char_" .. i, driving_video = format("v%d.mp4", i),
                                output = format("out/item%d.mp4", i) })
    end
    return d, support.write_file(d .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n"), md5
  end

  local function env()
    return format("cd %s && VIGGLE_BASE_URL=%s VIGGLE_API_KEY=%s", q(support.root), m.base_url, KEY)
  end

  -- bin/viggle with args, to its end; returns rc, stdout, stderr
  local function cli(args)
    serial = serial + 1
    local out, err = format("%s/cli%d.out", dir, serial), format("%s/cli%d.err", dir, serial)
    local rc = tonumber(support.capture(format("%s %s bin/viggle %s >%s 2>%s </dev/null; echo $?", env(),
      support.interp, args, out, err)))
    return rc, support.read_file(out), support.read_file(err)
  end

  -- a worker in the background: {pid, rc_file, out}; its exit code lands in rc_file
  local function worker(d, n, args)
    local w = { out = format("%s/w%d.out", d, n), rc_file = format("%s/w%d.rc", d, n), pidf = format("%s/w%d.pid", d, n) }
    os.execute(format("(%s %s bin/viggle batch %s >%s 2>&1 </dev/null & echo $! >%s; wait $!; echo $? >%s) 2>/dev/null &",
      env(), support.interp, args, q(w.out), q(w.pidf), q(w.rc_file)))
    for _ = 1, 200 do
      w.pid = tonumber((support.read_file(w.pidf) or ""):match("%d+"))
      if w.pid then break end
      core.sleep(0.01)
    end
    return w
  end
  local function rc_of(w) return tonumber((support.read_file(w.rc_file) or ""):match("%d+")) end
  local function wait_all(list, seconds)
    local t0 = core.now()
    while core.now() - t0 < seconds do
      local done = true
      for _, w in ipairs(list) do if not rc_of(w) then done = false end end
      if done then return true end
      core.sleep(0.1)
    end
    return false
  end

  -- the shared view (batch status --redis --json)
  local function status(path, url)
    local rc, out, err = cli(format("batch status %s --redis %s --json", q(path), url))
    assert.are.equal(0, rc, err)
    return cjson.decode(out)
  end

  describe("without its journal", function()
    it("does no work when Redis cannot be reached, and says where it looked", function()
      local _, path = fresh(2)
      local port = support.free_port({ [6379] = true })
      local rc, _, err = cli(format("batch %s --redis redis://127.0.0.1:%d/0", q(path), port))
      assert.are.equal(1, rc)
      assert.matches(format("cannot reach Redis at 127.0.0.1:%d/0: Connection refused", port), err, 1, true)
      assert.are.equal(0, #m:log())
    end)

    it("AUTH: a wrong or missing password is refused before any work; the right one works", function()
      local r = assert(support.redis({ password = "s3cret" }))
      local ok, e = pcall(function()
        local d, path = fresh(2)
        local rc, _, err = cli(format("batch %s --redis redis://:wrong@127.0.0.1:%d", q(path), r.port))
        assert.are.equal(1, rc)
        assert.matches("Redis at 127.0.0.1:" .. r.port .. "/0 refused the password", err, 1, true)
        rc, _, err = cli(format("batch %s --redis redis://127.0.0.1:%d", q(path), r.port))
        assert.are.equal(1, rc)
        assert.matches("wants a password (redis://:PASSWORD@host)", err, 1, true)
        assert.are.equal(0, #m:log())
        local url = format("redis://:s3cret@127.0.0.1:%d/2", r.port)
        rc, _, err = cli(format("batch status %s --redis %s", q(path), url))
        assert.are.equal(1, rc)
        assert.matches("no batch redis://:***@127.0.0.1:" .. r.port .. "/2 (batch m-", err, 1, true)
        assert.matches("in Redis (the batch has not run yet, or --name differs)", err, 1, true)
        rc, _, err = cli(format("batch %s --redis %s --lease 0", q(path), url))
        assert.are.equal(1, rc)
        assert.matches("lease (--lease) must be a positive number of seconds", err, 1, true)
        assert.are.equal(0, #m:log())
        rc, _, err = cli(format("batch %s --redis %s --interval 0.05", q(path), url))
        assert.are.equal(0, rc, err)
        assert.are.equal(support.read_file(DEMO), support.read_file(d .. "/out/item2.mp4"))
        assert.matches("redis://:***@127.0.0.1", err, 1, true) -- the summary names the journal, not the password
        assert.is_nil(err:find("s3cret", 1, true))
      end)
      r:stop()
      assert(ok, e)
    end)
  end)

  describe("--max-credits", function()
    it("holds for the whole fleet: two workers together send only what the limit allows", function()
      local r = assert(support.redis())
      local ok, e = pcall(function()
        local n = 10
        local d, path = fresh(n) -- each item: 2 credits (1.5 s of video)
        local args = format("%s --redis %s --max-credits 9 --concurrency 3 --interval 0.05 --json", q(path), r.url)
        local ws = { worker(d, 1, args), worker(d, 2, args) }
        assert.is_true(wait_all(ws, 40), "the workers did not finish within 40 s")
        assert.are.equal(1, rc_of(ws[1]))
        assert.are.equal(1, rc_of(ws[2]))
        assert.are.equal(4, m:posts().made) -- 4 x 2 credits; a fifth would make 10
        local st = status(path, r.url)
        assert.are.equal(4, st.counts.downloaded)
        assert.are.equal(6, st.counts.planned)
        for _, it in ipairs(st.items) do
          if it.state == "planned" then assert.matches("over max_credits 9", it.message, 1, true) end
        end
      end)
      r:stop()
      assert(ok, e)
    end)
  end)

  describe("four workers, two killed", function()
    it("downloads every item once, one POST each, never two live holders of one item", function()
      local r = assert(support.redis())
      local ok, e = pcall(function()
        local n = 40
        local d, path, md5 = fresh(n)
        -- jobs take about a second; answers and downloads take a while: kills land mid-flight
        m:config({ delay = 0.05, cdn_delay = 0.1, render_job = { advance = "time", step = 0.2 } })
        local claims = d .. "/claims.log"
        local args = format("%s --redis %s --lease 2 --concurrency 3 --interval 0.1 --json --claims-log %s",
          q(path), r.url, q(claims))
        local t0 = core.now()
        local ws = {}
        for i = 1, 4 do ws[i] = worker(d, i, args) end
        -- the shared view names the holders; a kill aims at a worker with a POST in
        -- flight (it leaves an uncertain item) when the view catches one, else at one
        -- with jobs submitted
        local seen_holders, killed, by_pid = {}, {}, {}
        for i = 1, 4 do by_pid[tostring(ws[i].pid)] = ws[i] end
        local function kill_one()
          local victim
          for _ = 1, 60 do
            local st = status(path, r.url)
            local submitted, posting = 0, nil
            for _, it in ipairs(st.items) do
              if it.holder then seen_holders[it.holder] = true end
              if it.state == "submitted" then submitted = submitted + 1 end
              local w = it.holder and by_pid[it.holder:match(":(%d+)~%x+$")]
              if it.state == "submitting" and w and not killed[w] then posting = w end
            end
            victim = posting
            if victim or submitted >= 6 then break end
            core.sleep(0.02)
          end
          for i = 1, 4 do if not victim and not killed[ws[i]] then victim = ws[i] end end
          os.execute("kill -KILL " .. victim.pid)
          killed[victim] = true
        end
        kill_one()
        core.sleep(0.3)
        kill_one()
        local names = {}
        for h in pairs(seen_holders) do names[#names + 1] = h end
        assert.is_true(#names >= 2, "the shared view shows fewer than two holders")
        for _, h in ipairs(names) do assert.matches("^[^:]+:%d+~%x%x%x%x%x%x%x%x$", h) end -- host:pid~random
        -- one worker comes back a second later
        core.sleep(1)
        ws[5] = worker(d, 5, args)
        local live = { ws[5] }
        for i = 1, 4 do if not killed[ws[i]] then live[#live + 1] = ws[i] end end
        assert.are.equal(3, #live)
        assert.is_true(wait_all(live, 60), "the workers did not finish within 60 s")
        local wall = core.now() - t0
        -- the items reported uncertain (a worker died with their POST in flight) are sent again, once
        local reported = {}
        local function note(text)
          for line in (text or ""):gmatch("[^\n]+") do
            local v = require("cjson.safe").decode(line)
            if type(v) == "table" and v.key and (v.state == "uncertain" or v.was_uncertain) then reported[v.key] = true end
          end
        end
        for _, w in ipairs(live) do note(support.read_file(w.out)) end
        local last_rc, last_out, last_err = rc_of(live[1]), nil, nil
        if next(reported) then
          assert.are.equal(1, rc_of(live[1]), "uncertain items, yet a worker exited 0")
          last_rc, last_out, last_err = cli(format("batch %s --redis %s --json --interval 0.05 --resubmit-uncertain",
            q(path), r.url))
        end
        note(last_out)
        for _, w in ipairs(live) do
          if not next(reported) then assert.are.equal(0, rc_of(w), support.read_file(w.out)) end
        end
        assert.are.equal(0, last_rc, last_err)
        -- every video on disk, byte-identical; one POST per item unless it was reported uncertain
        local demo = support.read_file(DEMO)
        local counts = m:posts().counts
        local posts = 0
        assert.are.equal(n, status(path, r.url).counts.downloaded)
        for i = 1, n do
          local key = "item" .. i
          assert.are.equal(demo, support.read_file(format("%s/out/item%d.mp4", d, i)), key .. " differs")
          assert.is_false(support.exists(format("%s/out/item%d.mp4.part", d, i)))
          local c = counts[md5[key]] or 0
          posts = posts + c
          if reported[key] then
            assert.is_true(c >= 1 and c <= 2, key .. " rendered " .. c .. " times")
          else
            assert.are.equal(1, c, key .. " was rendered " .. c .. " times, never reported uncertain")
          end
        end
        -- no two claims of one item overlap in time: a claim lasts until its
        -- release, or (a killed worker) until the end of its last renewal
        local open_claims, spans = {}, {}
        for what, key, w, a, b in (support.read_file(claims) or ""):gmatch("(%a+) (%S+) (%S+) (%d+) ?(%d*)\n") do
          local id = key .. " " .. w
          a = tonumber(a)
          if what == "claim" then
            local c = { key = key, worker = w, from = a, to = tonumber(b) }
            open_claims[id] = c
            spans[#spans + 1] = c
          elseif what == "renew" and open_claims[id] then
            open_claims[id].to = math.max(open_claims[id].to, a)
          elseif what == "release" and open_claims[id] then
            open_claims[id].to = a
            open_claims[id] = nil
          end
        end
        assert.is_true(#spans >= n, "fewer claims than items: " .. #spans)
        local by_key = {}
        for _, c in ipairs(spans) do
          by_key[c.key] = by_key[c.key] or {}
          table.insert(by_key[c.key], c)
        end
        for key, list in pairs(by_key) do
          table.sort(list, function(x, y) return x.from < y.from end)
          for i = 2, #list do
            assert.is_true(list[i].from >= list[i - 1].to, format("%s held by %s until %d and by %s from %d", key,
              list[i - 1].worker, list[i - 1].to, list[i].worker, list[i].from))
          end
        end
        -- the killed workers' items were taken over by the others
        local dead = {}
        for w in pairs(killed) do dead[":" .. w.pid .. "~"] = true end
        local taken = 0
        for _, list in pairs(by_key) do
          for i = 2, #list do
            if dead[list[i - 1].worker:match(":%d+~")] and not dead[list[i].worker:match(":%d+~")] then
              taken = taken + 1
            end
          end
        end
        assert.is_true(taken >= 2, "only " .. taken .. " items taken over from the killed workers")
        local uncertain = 0
        for _ in pairs(reported) do uncertain = uncertain + 1 end
        local figures = os.getenv("VIGGLE_FLEET_FIGURES")
        if figures then
          support.write_file(figures, format("items %d, workers 4 (+1 restarted), kills 2, POSTs %d (renders made %d), "
            .. "items reported uncertain %d, claims %d, items taken over from the killed %d, "
            .. "wall time %.1f s (until the fleet finished)\n", n, posts,
            m:posts().made, uncertain, #spans, taken, wall))
        end
      end)
      r:stop()
      assert(ok, e)
    end)
  end)

  describe("Redis restarted mid-batch", function()
    it("workers wait for it and go on: nothing lost, nothing paid twice", function()
      local r = assert(support.redis({ aof = true }))
      local ok, e = pcall(function()
        local n = 12
        local d, path, md5 = fresh(n)
        m:config({ render_job = { advance = "time", step = 0.2 } })
        local args = format("%s --redis %s --lease 6 --concurrency 3 --interval 0.1 --json", q(path), r.url)
        local ws = { worker(d, 1, args), worker(d, 2, args) }
        -- both workers at work (a worker still starting when Redis goes away
        -- is refused at once: no work starts without the journal), jobs in flight
        local function workers_seen()
          local c = core.redis_connect("127.0.0.1", r.port, 1)
          if not c then return 0 end
          local keys, seen = c:command("KEYS", "viggle:batch:*:workers"), 0
          if type(keys) == "table" and keys[1] then seen = tonumber(c:command("HLEN", keys[1])) or 0 end
          c:close()
          return seen
        end
        for _ = 1, 400 do
          if m:posts().made >= 3 and workers_seen() >= 2 then break end
          core.sleep(0.05)
        end
        r:kill()
        core.sleep(2)
        assert(r:start())
        assert.is_true(wait_all(ws, 60), "the workers did not finish within 60 s")
        for _, w in ipairs(ws) do assert.are.equal(0, rc_of(w), support.read_file(w.out)) end
        local counts = m:posts().counts
        for i = 1, n do
          assert.are.equal(support.read_file(DEMO), support.read_file(format("%s/out/item%d.mp4", d, i)))
          assert.are.equal(1, counts[md5["item" .. i]], "item" .. i)
        end
        local text = support.read_file(ws[1].out) .. support.read_file(ws[2].out)
        assert.matches("lost Redis at 127.0.0.1:" .. r.port, text, 1, true) -- and they said they waited
      end)
      r:stop()
      assert(ok, e)
    end)
  end)

  -- Only under LuaJIT: that nginx loads build/jit/viggle/core.so.
  local describe_nginx = type(jit) == "table" and describe or pending
  describe_nginx("inside OpenResty", function()
    it("handlers enqueue, a timer works the queue; Redis answering slowly never holds the worker", function()
      local r = assert(support.redis())
      local h, herr
      local ok, e = pcall(function()
        local d, _, md5 = fresh(3)
        m:config({ render_job = { advance = "time", step = 0.1 } })
        h, herr = support.nginx({
          template = support.root .. "/spec/hosts/fleet_nginx.conf.in", name = "viggle-fleet", ports = { "PORT" },
          vars = function()
            return { ROOT = support.root, HOSTS_DIR = support.root .. "/spec/hosts", BUILD_DIR = support.build_dir("jit"),
                     MOCK_URL = m.base_url, REDIS_URL = r.url, NAME = "queue-" .. serial }
          end,
          ready = function(n) return support.http_ok("http://127.0.0.1:" .. n.ports.PORT .. "/ping") end,
        })
        assert(h, herr)
        local url = "http://127.0.0.1:" .. h.ports.PORT
        local function get(path)
          local out = support.capture("curl -s --max-time 10 -w '\n%{time_total}' " .. q(url .. path))
          local body, t = out:match("^(.*)\n([%d.]+)$")
          return cjson.decode(body), tonumber(t)
        end
        for i = 1, 3 do
          local a = get(format("/enqueue?key=item%d&char=c%d&video=%s&output=%s", i, i, format("%s/v%d.mp4", d, i),
            format("%s/out/item%d.mp4", d, i)))
          assert.is_true(a.ok, a.err)
        end
        local st
        for _ = 1, 150 do
          st = get("/state")
          if st.downloaded == 3 or st.last_err then break end
          core.sleep(0.1)
        end
        assert.are.equal(3, st.downloaded, cjson.encode(st) .. h:error_log())
        local counts = m:posts().counts
        for i = 1, 3 do
          assert.are.equal(support.read_file(DEMO), support.read_file(format("%s/out/item%d.mp4", d, i)))
          assert.are.equal(1, counts[md5["item" .. i]])
        end
        -- Redis stops answering for 1.5 s (CLIENT PAUSE): the timer's call waits on its
        -- cosocket, and the worker answers /ping meanwhile
        get("/state?reset=1")
        local admin = assert(core.redis_connect("127.0.0.1", r.port, 2))
        assert(admin:command("CLIENT", "PAUSE", "1500", "ALL"))
        admin:close()
        local t0, worst = core.now(), 0
        while core.now() - t0 < 1.4 do
          local _, t = get("/ping")
          if t > worst then worst = t end
          core.sleep(0.05)
        end
        core.sleep(0.5)
        st = get("/state")
        assert.is_true(st.longest >= 1, "no run of the timer waited on the paused Redis: " .. cjson.encode(st))
        assert.is_true(worst < 0.3, format("/ping took %.3f s while Redis was paused", worst))
      end)
      if h then h:stop() end
      r:stop()
      assert(ok, e)
    end)
  end)
end)
