-- Under the libuv driver (luv) a sleep in a task lasts the time asked: not
-- less, and not ten times more.
local viggle = require("viggle")
local core = require("viggle.core")
local has_luv, uv = pcall(require, "luv")
local mock_server = require("spec.mock.server")

describe("viggle.uv timers", function()
  local driver, m
  setup(function()
    assert(has_luv, "lua-luv is needed for this spec")
    m = assert(mock_server.start())
    driver = require("viggle.uv").install(uv)
  end)
  teardown(function()
    if driver then driver.uninstall() end
    if m then m:stop() end
  end)

  it("a request's timeout holds: libcurl's own timers run on uv", function()
    local id = m:job({ id = "job_slow" })
    m:fault({ match = "/api/render/" .. id, kind = "slow", delay = 3 })
    local c = assert(viggle.new({ base_url = m.base_url, timeout = 0.5, retries = 0 }))
    local err, took
    viggle.spawn(function()
      local t0 = core.now()
      local _
      _, err = c:status(id)
      took = core.now() - t0
    end)
    uv.run()
    assert.are.equal("timeout", err and err.kind)
    assert.is_true(took < 2, string.format("%.3f s", took))
  end)

  it("a 0.3 s sleep in a task lasts 0.3 s", function()
    local took
    viggle.spawn(function()
      local t0 = core.now()
      viggle.sleep(0.3)
      took = core.now() - t0
    end)
    uv.run()
    assert.is_true(took >= 0.29 and took < 0.9, string.format("%.3f s", took))
  end)
end)
