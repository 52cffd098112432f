-- client:download against the hostile cases: links planted at the .part or
-- the path, a .part left by another download, two downloaders of one path,
-- bodies cut without a length, an empty 200, a web page answered 200. The
-- video on disk is either the whole, right file or absent.
local viggle = require("viggle")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local read, q = support.read_file, support.q
local VIDEO = support.read_file("spec/mock/files/demo.mp4")

describe("client:download keeps files whole", function()
  local m, c, dir, out

  setup(function()
    m = assert(mock_server.start())
    dir = m.prefix .. "/dl"
    out = dir .. "/out.mp4"
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    os.execute("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir))
    c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 10 }))
  end)

  local function job(id)
    return { job_id = id or "job_dl", status = "complete", cdn_url = m:cdn_url("/video/" .. (id or "job_dl") .. ".mp4") }
  end
  local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end
  local function cdn()
    local list = {}
    for _, r in ipairs(m:log()) do if r.server == "cdn" then list[#list + 1] = r end end
    return list
  end

  it("refuses a symbolic link planted at the .part, and leaves its target alone", function()
    write(dir .. "/victim", "fourteen bytes")
    os.execute("ln -s " .. q(dir .. "/victim") .. " " .. q(out .. ".part"))
    local path, err = c:download(job(), out)
    assert.is_nil(path)
    assert.are.equal("io", err.kind)
    assert.are.equal(out .. ".part is a symbolic link: refusing to follow it", err.message)
    assert.are.equal("fourteen bytes", read(dir .. "/victim"))
    assert.is_nil(read(out))
    assert.are.equal(0, #cdn())
  end)

  it("never saves a sign-in page answered 200 as the video, nor resumes from it", function()
    m:fault({ match = "/video/*", kind = "truncated", times = 1 }) -- a cut first try: a .part to resume
    local path, err = c:download(job(), out)
    assert.is_nil(path)
    local kept = #(read(out .. ".part") or "")
    assert.is_true(kept > 0, tostring(err))
    for _, ct in ipairs({ "text/html", "text/plain; charset=utf-8", "application/json", "application/problem+json",
                          "application/xml" }) do
      m:fault({ match = "/video/*", kind = "status", status = 200, body = "<html>Sign in to the Wi-Fi</html>",
                content_type = ct, times = 1 })
      path, err = c:download(job(), out)
      assert.is_nil(path, ct)
      assert.are.equal("http", err.kind, ct)
      assert.are.equal("NOT_VIDEO", err.code, ct)
      assert.matches("HTTP 200 with " .. ct:match("^[^;]+"):gsub("%p", "%%%0") .. ", not the video", err.message)
      assert.is_nil(read(out), ct)
      assert.are.equal("", read(out .. ".part") or "", ct) -- nothing of the page kept to resume from
    end
    path, err = c:download(job(), out)
    assert.are.equal(out, path, tostring(err))
    assert.are.equal(VIDEO, read(out))
    assert.is_nil(read(out .. ".part"))
  end)

  it("refuses a .part that is not a regular file", function()
    os.execute("mkfifo " .. q(out .. ".part"))
    local _, err = c:download(job(), out)
    assert.are.equal("io", err.kind)
    assert.are.equal(out .. ".part is not a regular file", err.message)
  end)

  it("replaces a link planted at the path itself (overwrite), never writing through it", function()
    write(dir .. "/victim", "fourteen bytes")
    os.execute("ln -s " .. q(dir .. "/victim") .. " " .. q(out))
    assert(c:download(job(), out, { overwrite = true }))
    assert.are.equal("fourteen bytes", read(dir .. "/victim"))
    assert.are.equal(VIDEO, read(out))
    assert.are.equal("", support.capture("find " .. q(out) .. " -type l"))
  end)

  it("does not resume a .part left by another download (its ETag differs): starts over", function()
    write(out .. ".part", ("x"):rep(1000))
    write(out .. ".part.meta", '"5f5e100-1388"')
    local _, info = assert(c:download(job(), out))
    assert.are.equal(VIDEO, read(out))
    assert.are.equal(0, info.resumed_from)
    local get = cdn()[1]
    assert.are.equal("bytes=1000-", get.headers.range)
    assert.are.equal('"5f5e100-1388"', get.headers["if-range"])
    assert.are.equal(200, get.status)
    assert.is_nil(read(out .. ".part"))
    assert.is_nil(read(out .. ".part.meta"))
  end)

  it("does not resume a .part with no validator on record", function()
    write(out .. ".part", ("x"):rep(1000))
    assert(c:download(job(), out))
    assert.are.equal(VIDEO, read(out))
    assert.is_nil(cdn()[1].headers.range)
  end)

  it("resumes a cut download whose validator still matches, with If-Range", function()
    m:fault({ match = "/video/*", kind = "truncated", sent = 1000 })
    local _, err = c:download(job(), out)
    assert.are.equal("network", err.kind)
    assert.are.equal(1000, #read(out .. ".part"))
    local _, info = assert(c:download(job(), out))
    assert.are.equal(VIDEO, read(out))
    assert.are.equal(1000, info.resumed_from)
    local second = cdn()[2]
    assert.are.equal("bytes=1000-", second.headers.range)
    assert.are.equal(cdn()[1].headers["if-range"] or second.headers["if-range"], second.headers["if-range"])
    assert.matches('^"%x+%-%x+"$', second.headers["if-range"])
    assert.are.equal(206, second.status)
  end)

  it("lets one of two processes downloading to one path write; the other is refused", function()
    m:fault({ match = "/video/*", kind = "stall", sent = 1000, delay = 5 }) -- 1000 bytes, 5 s, the rest
    local script = dir .. "/first.lua"
    write(script, string.format([[
      package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
      package.cpath = %q .. package.cpath
      local c = assert(require("viggle").new({ base_url = %q, api_key = "k" }))
      local ok, err = c:download({ job_id = "j", status = "complete", cdn_url = %q }, %q)
      -- written whole, then renamed: the waiting side never reads it half made
      -- (and file:write gives true, not the file, on Lua 5.1: no chained close)
      local f = io.open(%q, "w")
      f:write(ok and "ok" or tostring(err))
      f:close()
      os.rename(%q, %q)
    ]], package.cpath:match("^[^;]*;"), m.base_url, job().cdn_url, out, dir .. "/first.tmp",
        dir .. "/first.tmp", dir .. "/first.done"))
    os.execute(support.interp .. " " .. q(script) .. " >/dev/null 2>&1 &")
    for _ = 1, 200 do -- until the first one holds the .part, half written
      if #(read(out .. ".part") or "") >= 1000 then break end
      support.sleep(0.05)
    end
    local path, err = c:download(job(), out)
    assert.is_nil(path)
    assert.are.equal("io", err.kind)
    assert.are.equal("LOCKED", err.code)
    assert.are.equal("another download to " .. out .. " is in progress (" .. out .. ".part is locked)", err.message)
    for _ = 1, 300 do
      if read(dir .. "/first.done") then break end
      support.sleep(0.05)
    end
    assert.are.equal("ok", read(dir .. "/first.done"))
    assert.are.equal(VIDEO, read(out))
  end)

  it("refuses a body with no length cut short by the connection's end", function()
    m:fault({ match = "/video/*", kind = "raw",
              response = "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n\r\n" .. VIDEO:sub(1, 3000) })
    local path, err = c:download(job(), out)
    assert.is_nil(path)
    assert.are.equal("network", err.kind)
    assert.matches("sent no length", err.message)
    assert.is_nil(read(out))
  end)

  it("refuses an empty 200: no 0-byte video", function()
    m:fault({ match = "/video/*", kind = "raw",
              response = "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 0\r\n\r\n" })
    local path, err = c:download(job(), out)
    assert.is_nil(path)
    assert.are.equal("http", err.kind)
    assert.are.equal("the server sent an empty file (HTTP 200)", err.message)
    assert.is_nil(read(out))
    assert.is_nil(read(out .. ".part"))
  end)
end)
