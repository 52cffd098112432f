-- Under the libuv driver (luv) a sleep in a task lasts the time asked: not
-- less, and not ten times more.
local viggle = require("viggle")
local core = require("viggle.core")
local has_luv, uv = pcall(require, "luv")

describe("viggle.uv timers", function()
  local driver
  setup(function()
    assert(has_luv, "lua-luv is needed for this spec")
    driver = require("viggle.uv").install(uv)
  end)
  teardown(function() if driver then driver.uninstall() end end)

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
