-- Game loop bench (issue 11): a 16 ms-frame loop calling viggle.step(0) once a
-- frame while tasks upload, download and await; against the same transfers
-- made blocking. Prints one line per row: name, then key=value pairs.
--   lua5.4 bench/hosts/gameloop.lua [UP_MB] [DOWN_MB]
local root = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;./?.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local viggle = require("viggle")
local core = require("viggle.core")
local mock_server = require("spec.mock.server")
local support = require("spec.support")

local now, sleep, fmt = core.now, core.sleep, string.format
local UP = (tonumber(arg[1]) or 60) * 1024 * 1024
local DOWN = (tonumber(arg[2]) or 100) * 1024 * 1024
local MiB = 1024 * 1024

local m = assert(mock_server.start())
local dir = support.capture("mktemp -d"):gsub("%s+$", "")
local upload = dir .. "/dance.mp4"
do
  local f = assert(io.open(upload, "wb"))
  local chunk = ("0123456789abcdef"):rep(65536)
  for _ = 1, UP / #chunk do f:write(chunk) end
  f:close()
end
m:big(DOWN)
local c = assert(viggle.new({ base_url = m.base_url, api_key = "sk-test-valid", timeout = 120 }))
local FILES = mock_server.dir .. "/files/"
local function render() return assert(c:render({ ref_image = FILES .. "character.png", driving_video = upload })) end
local function download(path)
  os.remove(path) -- freeing a big file's blocks is the file system's time, not the loop's
  return assert(c:download(m.cdn_base .. "/video/big.mp4", path, { overwrite = true }))
end

local function quantile(list, q)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * q))] or 0
end

-- runs the spawned tasks under a 60 fps loop; returns the step times
local function frames()
  local steps, frame, next_frame = {}, 1 / 60, now()
  while true do
    local s = now()
    local live = viggle.step(0)
    steps[#steps + 1] = now() - s
    if live == 0 then return steps end
    next_frame = next_frame + frame
    local rest = next_frame - now()
    if rest > 0 then sleep(rest) else next_frame = now() end
  end
end

local function row(name, t)
  local parts = { name }
  for _, k in ipairs(t) do parts[#parts + 1] = k[1] .. "=" .. k[2] end
  print(table.concat(parts, " "))
end

local t = now()
render()
local up_block = now() - t
t = now()
download(dir .. "/b.mp4")
local down_block = now() - t
row("blocking", { { "upload_mibs", fmt("%.0f", UP / MiB / up_block) },
                  { "download_mibs", fmt("%.0f", DOWN / MiB / down_block) } })

for _, what in ipairs({ "upload", "download", "both+20awaits" }) do
  m:reset()
  m:config({ delay = 0.05 })
  local ids = m:jobs({ count = 20, id = "frame", advance = "time", step = 0.1 })
  local up_t, down_t
  local t0 = now()
  if what ~= "download" then viggle.spawn(function() render() up_t = now() - t0 end) end
  if what ~= "upload" then viggle.spawn(function() download(dir .. "/l.mp4") down_t = now() - t0 end) end
  if what == "both+20awaits" then
    for i = 1, 20 do viggle.spawn(function() assert(c:await(ids[i], { interval = 0.1 })) end) end
  end
  local steps = frames()
  row("60fps:" .. what, {
    { "frames", #steps }, { "step_max_ms", fmt("%.2f", quantile(steps, 1) * 1000) },
    { "step_p99_ms", fmt("%.2f", quantile(steps, 0.99) * 1000) },
    { "step_p50_ms", fmt("%.3f", quantile(steps, 0.5) * 1000) },
    { "upload_mibs", up_t and fmt("%.0f", UP / MiB / up_t) or "-" },
    { "upload_ratio", up_t and fmt("%.2f", up_block / up_t) or "-" },
    { "download_mibs", down_t and fmt("%.0f", DOWN / MiB / down_t) or "-" },
    { "download_ratio", down_t and fmt("%.2f", down_block / down_t) or "-" },
  })
end
m:stop()
os.execute("rm -rf " .. support.q(dir))
