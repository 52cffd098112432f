-- What ThreadSanitizer watches (tools/memcheck.sh tsan): the transfer thread
-- (csrc/worker.c) under load, with nothing that starts a process (a shell
-- under the TSan runtime crashes). The mock runs outside, started by the
-- caller: VIGGLE_BASE_URL, VIGGLE_CDN_BASE.
local viggle = require("viggle")
local core = require("viggle.core")

local base, cdn = assert(os.getenv("VIGGLE_BASE_URL")), assert(os.getenv("VIGGLE_CDN_BASE"))
local c = assert(viggle.new({ base_url = base, api_key = "sk-test-valid", timeout = 30 }))
local tmp = os.tmpname()

-- 1. tasks: awaits, a download with progress (counters read while the
-- thread writes them), a task cancelled mid-transfer, under step(0)
local done, progress = 0, 0
for i = 1, 30 do
  viggle.spawn(function()
    local job = c:status("job_tsan_" .. i)
    if job or true then done = done + 1 end
  end)
end
viggle.spawn(function()
  assert(c:download(cdn .. "/video/big.mp4", tmp, { overwrite = true,
    on_progress = function() progress = progress + 1 end }))
end)
local victim = viggle.spawn(function() c:download(cdn .. "/video/big.mp4", tmp .. ".2", { overwrite = true }) end)
local t0 = core.now()
while viggle.step(0.001) > 0 do
  if victim:state() == "waiting" and core.now() - t0 > 0.05 then victim:cancel() end
  assert(core.now() - t0 < 120)
end
assert(done == 30, done)

-- 2. the multi itself: add, remove in flight, close with transfers in flight
local m = assert(core.multi({ thread = true }))
for round = 1, 20 do
  local rs = {}
  for i = 1, 8 do
    local r = core.request()
    assert(r:setup({ url = base .. "/api/render/job_" .. round .. "_" .. i }))
    assert(m:add(r))
    rs[i] = r
  end
  m:remove(rs[1])
  rs[2]:close()
  m:poll(0.01)
  m:perform()
  if round % 5 == 0 then
    m:close()
    m = assert(core.multi({ thread = true }))
  end
end
m:close()
os.remove(tmp)
os.remove(tmp .. ".2")
os.remove(tmp .. ".2.part")
io.write("tsan load: ok, ", progress, " progress calls\n")
