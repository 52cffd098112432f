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

-- files in memory (tmpfs) when there is one, as scenario 4 does: a disk's
-- write-back would be measured, not the client. The mock lives there too
-- (the big file it serves, the upload bodies it keeps).
local dir = support.capture("mktemp -d -p /dev/shm 2>/dev/null || mktemp -d"):gsub("%s+$", "")
local m = assert(mock_server.start({ prefix = dir .. "/mock" }))
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
  return assert(c:download(m.cdn_base .. "/video/big.mp4", path, { overwrite = true }))
end

local function quantile(list, q)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * q))] or 0
end

-- runs the spawned tasks under a 60 fps loop; returns the step times (wall
-- clock, and CPU time of this thread)
local function frames()
  local steps, cpu, frame, next_frame = {}, {}, 1 / 60, now()
  while true do
    local s, c0 = now(), core.thread_cpu()
    local live = viggle.step(0)
    steps[#steps + 1] = now() - s
    cpu[#cpu + 1] = core.thread_cpu() - c0
    if live == 0 then return steps, cpu end
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

local function median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

-- one transfer (or all of them) as tasks under the 60 fps loop
local function in_loop(what)
  m:reset()
  m:config({ delay = 0.05 })
  local ids = m:jobs({ count = 20, id = "frame", advance = "time", step = 0.1 })
  local r = {}
  os.remove(dir .. "/l.mp4") -- here: freeing a big file's blocks is the file system's time, not a step's
  local t0 = now()
  if what ~= "download" then viggle.spawn(function() render() r.up = now() - t0 end) end
  if what ~= "upload" then viggle.spawn(function() download(dir .. "/l.mp4") r.down = now() - t0 end) end
  if what == "both+20awaits" then
    for i = 1, 20 do viggle.spawn(function() assert(c:await(ids[i], { interval = 0.1 })) end) end
  end
  r.steps, r.cpu = frames()
  return r
end

-- Blocking and in-loop runs interleaved, ROUNDS times; medians.
local ROUNDS = tonumber(os.getenv("ROUNDS") or "") or 3
local ub, db, ul, dl, steps, cpus = {}, {}, {}, {}, {}, {}
for i = 1, ROUNDS do
  local t = now()
  render()
  ub[i] = now() - t
  os.remove(dir .. "/b.mp4")
  t = now()
  download(dir .. "/b.mp4")
  db[i] = now() - t
  local u, d = in_loop("upload"), in_loop("download")
  ul[i], dl[i] = u.up, d.down
  for _, r in ipairs({ u, d }) do
    for k = 1, #r.steps do steps[#steps + 1] = r.steps[k] cpus[#cpus + 1] = r.cpu[k] end
  end
end
row("blocking", { { "upload_mibs", fmt("%.0f", UP / MiB / median(ub)) },
                  { "download_mibs", fmt("%.0f", DOWN / MiB / median(db)) } })
row("60fps:transfers", {
  { "frames", #steps }, { "step_max_ms", fmt("%.2f", quantile(steps, 1) * 1000) },
  { "step_cpu_max_ms", fmt("%.2f", quantile(cpus, 1) * 1000) },
  { "step_p99_ms", fmt("%.2f", quantile(steps, 0.99) * 1000) },
  { "upload_mibs", fmt("%.0f", UP / MiB / median(ul)) }, { "upload_ratio", fmt("%.2f", median(ub) / median(ul)) },
  { "download_mibs", fmt("%.0f", DOWN / MiB / median(dl)) },
  { "download_ratio", fmt("%.2f", median(db) / median(dl)) },
})
local b = in_loop("both+20awaits")
row("60fps:both+20awaits", {
  { "frames", #b.steps }, { "step_max_ms", fmt("%.2f", quantile(b.steps, 1) * 1000) },
  { "step_cpu_max_ms", fmt("%.2f", quantile(b.cpu, 1) * 1000) },
  { "step_p99_ms", fmt("%.2f", quantile(b.steps, 0.99) * 1000) },
  { "upload_mibs", fmt("%.0f", UP / MiB / b.up) }, { "download_mibs", fmt("%.0f", DOWN / MiB / b.down) },
})
m:stop()
os.execute("rm -rf " .. support.q(dir))
