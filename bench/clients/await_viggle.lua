-- Many jobs with viggle: every job in IDS_FILE followed to its end.
--   lua5.4 bench/clients/await_viggle.lua MODE BASE_URL IDS_FILE CONCURRENCY [CA_FILE [MAX_HOST_CONNECTIONS]]
-- MAX_HOST_CONNECTIONS: viggle.configure{max_host_connections = N} first.
-- MODE await_all: c:await_all(ids, {interval = 0.5, concurrency = CONCURRENCY})
-- MODE loop:      the plain loop of the API docs: one job after another, each
--                 polled with c:status until it is final (CONCURRENCY unused)
-- MODE pool:      CONCURRENCY tasks (viggle.spawn) that each take the next id
--                 from a shared list and poll it with c:status until it is
--                 final: a worker pool written with viggle's public primitives
-- Prints jobs=N wall_s=X cpu_s=Y complete=C other=O (wall and CPU over the
-- waiting only: os.clock is user+sys of this process). Peak RSS comes from
-- /usr/bin/time around the whole process.
-- the library under test: the snapshot bench/run.sh took (VIGGLE_BENCH_ROOT), else this checkout
local root = os.getenv("VIGGLE_BENCH_ROOT") or "."
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/5.4/?.so;" .. package.cpath
local viggle = require("viggle")

local mode, base, ids_file, concurrency, ca_file = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
local max_host = tonumber(arg[6])
if ca_file == "" then ca_file = nil end
if max_host then
  if not viggle.configure then error("this viggle has no viggle.configure") end
  viggle.configure({ max_host_connections = max_host })
end
local ids = {}
for line in io.lines(ids_file) do
  if line ~= "" then ids[#ids + 1] = line end
end
local c = assert(viggle.new({ base_url = base, retries = 0, ca_file = ca_file }))
local TERMINAL = viggle.TERMINAL

local complete, other = 0, 0
local c0, w0 = os.clock(), viggle.now()
if mode == "await_all" then
  local results = c:await_all(ids, { interval = 0.5, concurrency = concurrency })
  for i = 1, #ids do
    local r = results[i]
    if type(r) == "table" and r.status == "complete" then complete = complete + 1 else other = other + 1 end
  end
elseif mode == "loop" then
  for i = 1, #ids do
    local job, err
    while true do
      job, err = c:status(ids[i])
      if not job or TERMINAL[job.status] then break end
      viggle.sleep(0.5)
    end
    if job and job.status == "complete" then complete = complete + 1 else other = other + 1 end
    if err then io.stderr:write(tostring(err), "\n") end
  end
elseif mode == "pool" then
  local results, next_i = {}, 1
  local function worker()
    while next_i <= #ids do
      local i = next_i
      next_i = next_i + 1
      local job, err
      while true do
        job, err = c:status(ids[i])
        if not job or TERMINAL[job.status] then break end
        viggle.sleep(0.5)
      end
      results[i] = job or err
    end
  end
  for _ = 1, math.min(concurrency, #ids) do viggle.spawn(worker) end
  assert(viggle.run())
  for i = 1, #ids do
    local r = results[i]
    if type(r) == "table" and r.status == "complete" then complete = complete + 1 else other = other + 1 end
  end
else
  error("mode must be await_all, loop or pool")
end
local c1, w1 = os.clock(), viggle.now()
print(string.format("jobs=%d wall_s=%.6f cpu_s=%.6f complete=%d other=%d", #ids, w1 - w0, c1 - c0, complete, other))
