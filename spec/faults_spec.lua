-- The fault table (README.md, "Faults"): every cell of spec/faults_table.lua
-- run against the mock, and README.md showing exactly that table.
local viggle = require("viggle")
local http = require("viggle.http")
local mock_server = require("spec.mock.server")
local support = require("spec.support")
local T = require("spec.faults_table")

local KEY = "sk-test-valid"
local WAIT = { interval = 0.05, timeout = 0.4 }

describe("the fault table", function()
  local m, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/faults"
    os.execute("mkdir -p " .. support.q(dir))
  end)
  teardown(function() if m then m:stop() end end)

  it("is the one README.md shows", function()
    local readme = assert(support.read_file(support.root .. "/README.md"))
    local a = assert(readme:find(T.BEGIN, 1, true), "README.md has no fault table")
    local b = assert(readme:find(T.END, a, true))
    assert.are.equal(T.markdown(), readme:sub(a + #T.BEGIN + 1, b - 1))
  end)

  -- Each operation has its own job (and so its own fault): where its
  -- request goes, the method, and the job ids it follows.
  local TARGET = {
    status = { "/api/render/job-1", "GET", "job-1" },
    await = { "/api/render/job-2", "GET", "job-2" },
    await_all = { "/api/render/job-3", "GET", "job-3", "job-4" },
    render = { "/api/render", "POST" },
    cancel = { "/api/render/job-5", "DELETE", "job-5" },
    download = { "/video/job-6.mp4", "GET" },
  }

  -- Runs op; returns its outcome ("ok" or the error kind) and the error.
  local function run(c, op, cdn)
    local png, demo = mock_server.dir .. "/files/character.png", mock_server.dir .. "/files/demo.mp4"
    local t = TARGET[op]
    local res, err
    if op == "status" then res, err = c:status(t[3])
    elseif op == "await" then res, err = c:await(t[3], WAIT)
    elseif op == "await_all" then
      local results = c:await_all({ t[3], t[4] }, WAIT)
      res, err = results[1], results[1]
      if viggle.is_error(res) then res = nil else err = nil end
      assert.are.equal(viggle.is_error(results[1]), viggle.is_error(results[2]))
    elseif op == "render" then res, err = c:render({ ref_image = png, driving_video = demo }, { timeout = 1 })
    elseif op == "cancel" then res, err = c:cancel(t[3], { timeout = 1 })
    else
      res, err = c:download(cdn .. t[1], dir .. "/video.mp4", { overwrite = true, resume = false, timeout = 1 })
    end
    if res then return "ok" end
    assert.is_true(viggle.is_error(err), tostring(err))
    return err.kind, err
  end

  for _, f in ipairs(T.faults) do
    describe(f[1], function()
      local base, cdn
      setup(function() -- the jobs and every operation's fault, at once
        m:reset()
        m:jobs({ id = "job", count = 6, statuses = { "processing", "complete" } }) -- complete at the 2nd poll
        base, cdn = m.base_url, m.cdn_base
        if f[3] == nil then -- refused: a port nothing listens on
          base, cdn = "http://127.0.0.1:1", "http://127.0.0.1:1"
          return
        end
        local faults = {}
        for _, op in ipairs(T.ops) do
          local t = TARGET[op]
          for i = 3, math.max(#t, 3) do
            local fault = f[3]
            if type(fault) == "function" then
              -- (a download is sent to a video: the mask, on the CDN; the others to the CDN from the API)
              fault = fault(t[1], op == "download" and m:cdn_url("/mask/x.mp4") or m:cdn_url("/video/x.mp4"))
            end
            local one = { match = t[i] and ("/api/render/" .. t[i]) or t[1], method = t[2], times = -1 }
            if op == "download" or op == "render" then one.match = t[1] end
            for k, v in pairs(fault) do one[k] = v end
            faults[#faults + 1] = one
          end
        end
        m:control("POST", "/_mock/faults", { faults = faults })
      end)

      for _, op in ipairs(T.ops) do
        local want = f[4][op]
        it(op .. ": " .. want, function()
          local c = assert(viggle.new({ base_url = base, api_key = KEY, timeout = 1, retries = 1, max_body = 65536 }))
          local exchange, sent = http.exchange, 0
          http.exchange = function(...)
            sent = sent + 1
            return exchange(...)
          end
          local ok, kind, err = pcall(run, c, op, cdn)
          http.exchange = exchange
          assert.is_true(ok, tostring(kind))
          local got = kind .. (sent > math.max(#TARGET[op] - 2, 1) and "+" or "")
          assert.are.equal(want, got, tostring(err))
        end)
      end
    end)
  end
end)
