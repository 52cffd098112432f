-- Limits a user sets or meets: the body cap above 2 GiB, a sub-second stall
-- limit, and header blocks too large to keep (kind too_large, like a body).
local viggle = require("viggle")
local mock_server = require("spec.mock.server")

local KEY = "sk-test-valid"
local GiB = 1024 * 1024 * 1024

describe("limits", function()
  local m, c, dir

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/limits"
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    c = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 10, retries = 0 }))
    os.remove(dir .. "/out.mp4")
    os.remove(dir .. "/out.mp4.part")
    os.remove(dir .. "/out.mp4.part.meta")
  end)

  it("names a body cap above 2 GiB exactly when an answer claims more", function()
    local id = m:job({ id = "job_big" })
    local roomy = assert(viggle.new({ base_url = m.base_url, api_key = KEY, timeout = 10, retries = 0,
                                      max_body = 3 * GiB }))
    m:fault({ match = "/api/render/" .. id, kind = "truncated", length = 4 * GiB, sent = 10 })
    local job, err = roomy:status(id)
    assert.is_nil(job)
    assert.are.equal("too_large", err.kind)
    assert.are.equal("response body is larger than the 3221225472 byte limit", err.message)
  end)

  it("gives up a download stalled longer than a sub-second stall_timeout", function()
    local id = m:job({ id = "job_stall" })
    local job = assert(c:await(id, { interval = 0.001 }))
    m:fault({ match = "/video/*", kind = "stall", sent = 1000, delay = 4 })
    local t0 = os.time()
    local path, err = c:download(job, dir .. "/out.mp4", { stall_timeout = 0.5 })
    assert.is_nil(path)
    assert.are.equal("timeout", err.kind)
    assert.is_true(os.time() - t0 <= 3, "gave up after " .. (os.time() - t0) .. " s")
    assert.is_nil(io.open(dir .. "/out.mp4"))
  end)

  describe("header blocks over the limits are too_large, like a body", function()
    local OK = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    it("one header line of 1 MB", function()
      m:fault({ match = "/api/render/job_x", kind = "raw", response = OK, pad = 1000000, pad_line = 1000000 })
      local _, err = c:status("job_x")
      assert.are.equal("too_large", err.kind)
      assert.matches("response headers are larger than the %d+ byte limit", err.message)
    end)

    it("more than 256 KiB of header lines", function()
      m:fault({ match = "/api/render/job_x", kind = "raw", response = OK, pad = 300000 })
      local _, err = c:status("job_x")
      assert.are.equal("too_large", err.kind)
      assert.are.equal("response headers are larger than the 262144 byte limit", err.message)
    end)

    it("for a download too", function()
      local job = { job_id = "job_h", status = "complete", cdn_url = m:cdn_url("/video/job_h.mp4") }
      m:fault({ match = "/video/*", kind = "raw", response = OK, pad = 300000 })
      local _, err = c:download(job, dir .. "/out.mp4")
      assert.are.equal("too_large", err.kind)
      assert.is_nil(io.open(dir .. "/out.mp4"))
    end)
  end)
end)
